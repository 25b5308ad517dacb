#!/usr/bin/env bash
# Build the free-threaded CPython 3.13t (PEP 703) and a venv for it, into build/py313t/.
#
# Why: on the stock CPython 3.11 the GIL runs pure-Python callbacks of different colors one at a
# time; libasync-smp's model (colored callbacks on shared-memory threads) only becomes real for
# pure-Python handlers on a build with the GIL compiled out.
#
# Where the source comes from: Debian trixie's `python3.13` source package, fetched with a private
# apt configuration under build/py313t/apt/ (APT_CONFIG), so the system's /etc/apt and
# /var/lib/apt stay untouched (checked below). We build the upstream tarball the package carries
# plus Debian's upstream-fix patches (CVE-*, crash fixes); Debian's layout patches (dist-packages,
# multiarch, ensurepip disabled, ...) target /usr and would break a private prefix with a venv.
#
# Re-running is cheap: each stage leaves a stamp and is skipped when its stamp is present.
# Environment: FT_BUILD_DIR (default build/py313t), JOBS (default nproc), FT_REBUILD=1 to redo all,
# FT_DEBUG_SYMBOLS=1 to compile with -g.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROOT=${FT_BUILD_DIR:-$REPO/build/py313t}
JOBS=${JOBS:-$(nproc)}
SUITE=trixie
MIRROR=http://deb.debian.org/debian
KEYRINGS=/usr/share/keyrings/debian-archive-trixie-automatic.gpg,/usr/share/keyrings/debian-archive-trixie-stable.gpg
PREFIX=$ROOT/install
VENV=$ROOT/venv
LOGS=$ROOT/logs
T0=$(date +%s)

say() { printf '== freethreaded [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf '== freethreaded: ERROR: %s\n' "$*" >&2; exit 1; }
# Run a noisy command with its output in a log; on failure show the log's tail and stop.
logged() {
  local name=$1; shift
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    tail -n 40 "$LOGS/$name.log" >&2
    die "$name failed (full log: $LOGS/$name.log)"
  fi
}

mkdir -p "$ROOT" "$LOGS"
exec 9>"$ROOT/.lock"
flock 9   # two callers (make, an experiment) must not build into the same folder at once

[ "${FT_REBUILD:-}" = 1 ] && rm -f "$PREFIX/.complete" "$VENV/.installed"

# --- 1. Build dependencies from the system's own (bookworm) archive, only those missing -------
# ssl, ctypes, zlib, bz2, lzma, sqlite3, readline, curses, uuid: what pip, the runtime, the web
# server and the tests need. dpkg-dev is not needed: we unpack the source ourselves.
BUILD_DEPS=(build-essential pkg-config xz-utils patch libssl-dev zlib1g-dev libffi-dev libbz2-dev
            liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev)
if [ ! -f "$PREFIX/.complete" ]; then
  missing=()
  for p in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    say "installing build dependencies: ${missing[*]}"
    logged apt-build-deps bash -c "$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      $SUDO apt-get install -y -qq --no-install-recommends ${missing[*]}"
  fi
fi

# --- 2. Source: apt-get source with a private apt configuration -------------------------------
etc_apt_fingerprint() { find /etc/apt -type f -exec md5sum {} + 2>/dev/null | sort | md5sum; }
apt_lists_fingerprint() { ls -l --time-style=+%s /var/lib/apt/lists 2>/dev/null | md5sum; }
SRC_DIR=$ROOT/src
if [ ! -f "$SRC_DIR/.complete" ] && [ ! -f "$PREFIX/.complete" ]; then
  APT=$ROOT/apt
  for k in ${KEYRINGS//,/ }; do
    [ -r "$k" ] || die "$k is missing: install debian-archive-keyring (bookworm's ships trixie's keys)"
  done
  mkdir -p "$APT"/{etc/apt.conf.d,etc/sources.list.d,etc/preferences.d,state/lists/partial,cache/archives/partial}
  : > "$APT/state/status"
  echo "deb-src [signed-by=$KEYRINGS] $MIRROR $SUITE main" > "$APT/sources.list"
  cat > "$APT/apt.conf" <<CONF
// Private apt configuration: only trixie's deb-src index, kept under $APT.
Dir::Etc::sourcelist "$APT/sources.list";
Dir::Etc::sourceparts "$APT/etc/sources.list.d";
Dir::Etc::Parts "$APT/etc/apt.conf.d";
Dir::Etc::preferences "$APT/etc/preferences";
Dir::Etc::preferencesparts "$APT/etc/preferences.d";
Dir::State "$APT/state";
Dir::State::Lists "$APT/state/lists";
Dir::State::status "$APT/state/status";
Dir::Cache "$APT/cache";
Dir::Log "$APT/log";
APT::Sandbox::User "$(id -un)";
CONF
  etc_before=$(etc_apt_fingerprint); lists_before=$(apt_lists_fingerprint)
  say "apt-get update ($SUITE deb-src, private APT_CONFIG=$APT/apt.conf)"
  logged apt-update env APT_CONFIG="$APT/apt.conf" apt-get update -q
  version=$(APT_CONFIG="$APT/apt.conf" apt-cache showsrc python3.13 | awk '/^Version:/{print $2; exit}')
  [ -n "$version" ] || die "python3.13 not found in $SUITE's Sources index"
  say "apt-get source python3.13=$version (download only)"
  rm -rf "$SRC_DIR"; mkdir -p "$SRC_DIR/dl"
  (cd "$SRC_DIR/dl" && logged apt-source env APT_CONFIG="$APT/apt.conf" \
       apt-get source -q --download-only "python3.13=$version")
  [ "$(etc_apt_fingerprint)" = "$etc_before" ] || die "the system's /etc/apt changed during apt-get"
  if [ "$(apt_lists_fingerprint)" = "$lists_before" ]; then
    say "system /etc/apt and /var/lib/apt/lists unchanged (checked)"
  else   # another apt-get update may have run meanwhile: worth a line, not a failed build
    say "warning: /var/lib/apt/lists changed meanwhile (another apt-get update?); /etc/apt unchanged"
  fi

  say "unpacking the upstream tarball and applying Debian's upstream-fix patches"
  tar -xJf "$SRC_DIR"/dl/python3.13_*.orig.tar.xz -C "$SRC_DIR"
  tar -xJf "$SRC_DIR"/dl/python3.13_*.debian.tar.xz -C "$SRC_DIR"
  mv "$SRC_DIR"/Python-3.13.* "$SRC_DIR/cpython"
  applied=0
  while read -r p; do
    patch -d "$SRC_DIR/cpython" -p1 -s --forward < "$SRC_DIR/debian/patches/$p" >"$LOGS/patch.log" 2>&1 \
      || { cat "$LOGS/patch.log" >&2; die "Debian patch $p does not apply"; }
    applied=$((applied + 1))
  done < <(grep -E '^(CVE-|ssl-|dict-use-after-free|traverse-managed-dicts|gchead-alignment|issue127330)' \
             "$SRC_DIR/debian/patches/series")
  echo "$version" > "$SRC_DIR/.complete"
  say "source ready: python3.13 $version, $applied fix patches applied"
fi

# --- 3. configure --disable-gil, make, make install -------------------------------------------
if [ ! -f "$PREFIX/.complete" ]; then
  B=$SRC_DIR/cpython
  # CPython's default OPT is "-DNDEBUG -g -O3 -Wall". Debug info changes no generated code but
  # costs about 11 s of the make (79 s with it, 68 s without, on 2 cores), so it is left out
  # unless FT_DEBUG_SYMBOLS=1 asks for it (for `perf record --call-graph dwarf` or gdb; then
  # rebuild with FT_REBUILD=1).
  opt="-O3 -Wall"                      # configure puts -DNDEBUG in front
  [ "${FT_DEBUG_SYMBOLS:-}" = 1 ] && opt="-g -O3 -Wall"
  say "configure --disable-gil --prefix=$PREFIX OPT=\"$opt\" (no PGO/LTO)"
  (cd "$B" && logged configure ./configure --disable-gil --prefix="$PREFIX" --disable-test-modules \
       --with-ensurepip=install OPT="$opt")
  say "make -j$JOBS (about 70 s on 2 idle cores)"
  (cd "$B" && logged make make -j"$JOBS")
  say "make install"
  rm -rf "$PREFIX"
  (cd "$B" && logged make-install make install)
  "$PREFIX/bin/python3.13t" - <<'PY' || die "the installed interpreter is not a working free-threaded build"
import sys, sysconfig, ssl, ctypes, zlib, bz2, lzma, sqlite3, uuid, readline
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1, "built with the GIL"
PY
  cat "$SRC_DIR/.complete" > "$PREFIX/.complete"
  rm -rf "$SRC_DIR/cpython" "$SRC_DIR/debian"   # 700 MB of objects; the tarballs stay in dl/
fi

# --- 4. A venv with the `freethreaded` extra of pyproject.toml --------------------------------
REQS=$("$PREFIX/bin/python3.13t" - "$REPO/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["freethreaded"]))
PY
)
if [ ! -f "$VENV/.installed" ] || [ "$(cat "$VENV/.installed")" != "$REQS" ]; then
  say "venv $VENV with the freethreaded extra: $(echo $REQS)"
  rm -rf "$VENV"
  logged venv "$PREFIX/bin/python3.13t" -m venv "$VENV"
  # shellcheck disable=SC2086
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check $REQS >"$LOGS/pip-install.log" 2>&1; then
    grep -v '^WARNING: Location' "$LOGS/pip-install.log" | tail -n 25 >&2
    die "pip could not install the freethreaded extra on 3.13t (full log: $LOGS/pip-install.log).
  A package with no cp313t wheel builds from its sdist: hypothesis 6.170.15's needs Rust and
  crates.io (6.155.7 is the newest hypothesis with a wheel 3.13t can use); httptools 0.9.0's
  builds with the C compiler."
  fi
  echo "$REQS" > "$VENV/.installed"
fi

"$VENV/bin/python" -c 'import sys; assert not sys._is_gil_enabled(), "GIL is on"' \
  || die "$VENV/bin/python runs with the GIL enabled"
say "ready: $VENV/bin/python ($("$VENV/bin/python" -VV | head -1))"
