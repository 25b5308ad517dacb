#!/usr/bin/env bash
# Run the stress tests RUNS times in a row under one interpreter and count the passes.
#
# Free threading exposes races the GIL hid, and a race shows up in some runs only: one green run
# proves little, so this repeats the whole selection and stops at the first failing run (whose
# output is kept in full) after printing how many runs passed before it.
# Usage: stress.sh PYTHON RUNS K_EXPRESSION TEST_PATH...
set -uo pipefail
PY=$1 RUNS=$2 K=$3; shift 3
[ $# -gt 0 ] || { echo "stress: no test paths given" >&2; exit 2; }
export PYTHON_GIL=0
label=$("$PY" -c 'import sys, sysconfig; print(f"{sys.version_info[0]}.{sys.version_info[1]}" + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))')
log=$(mktemp); trap 'rm -f "$log"' EXIT
passes=0
for i in $(seq 1 "$RUNS"); do
  start=$(date +%s)
  "$PY" -m pytest -q -p no:cacheprovider -k "$K" "$@" >"$log" 2>&1
  rc=$?
  summary=$(tail -n 1 "$log")
  if [ $rc -eq 5 ]; then
    echo "stress: no test matches -k '$K' in $*" >&2; exit 1
  elif [ $rc -ne 0 ]; then
    cat "$log"
    echo "stress ($label): run $i/$RUNS FAILED after $passes passes in a row"; exit 1
  fi
  passes=$((passes + 1))
  echo "stress ($label): run $i/$RUNS passed in $(( $(date +%s) - start ))s: $summary"
done
echo "stress ($label): $passes/$RUNS runs passed in a row (-k '$K')"
