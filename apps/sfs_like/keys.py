"""The server's long-term key and its fingerprint: what a self-certifying pathname names.

As in SFS, a client needs no certificate authority: the pathname `host:port:fingerprint` carries a
hash of the server's public key, and the client refuses any server whose key does not hash to it.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ._crypto_import import X25519PrivateKey

_FP_DOMAIN = b"sfs-like hostid v1"
KEY_SIZE = 32
log = logging.getLogger("sfs_like.keys")


def fingerprint(public_key: bytes) -> str:
    """32 lowercase base32 characters of SHA-256 over the raw X25519 public key (160 bits, like SFS)."""
    digest = hashlib.sha256(_FP_DOMAIN + public_key).digest()[:20]
    return base64.b32encode(digest).decode("ascii").lower()


def load_or_create(path: str | os.PathLike) -> X25519PrivateKey:
    """The key in `path` (32 raw bytes); created with mode 0600 when the file does not exist.

    Two servers started at once with the same new path must end up with the same key, and neither
    may read a half-written file: the key is written to a private temporary file and linked into
    place, which fails if another process linked its key first; that key is then the one used.
    """
    path = Path(path)
    if not path.exists():
        key = X25519PrivateKey.generate()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key.private_bytes_raw())
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)                  # atomic, and never replaces an existing key
            return key
        except FileExistsError:
            pass                                # another process was first: use its key
        finally:
            tmp.unlink(missing_ok=True)
    return X25519PrivateKey.from_private_bytes(_read_key(path))


def _read_key(path: Path) -> bytes:
    """The 32 bytes of an existing key file. Only a regular file is read, and never more than it
    can hold (`--key /dev/zero` was read whole, until memory ran out); one that group or others
    may read or write gets a warning, as ssh gives, since whoever reads it can impersonate the
    server. Opened non-blocking, so a FIFO there cannot hang the start."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: not a regular file; the key file holds a 32-byte raw "
                             "X25519 private key")
        if st.st_nlink > 1:
            raise ValueError(f"{path}: the key file has {st.st_nlink - 1} other hard link(s), one "
                             "may be inside the export (where clients could read and replace it); "
                             "make a private copy of the key and use that")
        if st.st_size != KEY_SIZE:
            raise ValueError(f"{path}: expected a 32-byte raw X25519 private key, found "
                             f"{st.st_size} bytes")
        raw = os.read(fd, KEY_SIZE + 1)
    finally:
        os.close(fd)
    if len(raw) != KEY_SIZE:
        raise ValueError(f"{path}: expected a 32-byte raw X25519 private key, read {len(raw)} bytes")
    if st.st_mode & 0o077:
        log.warning("key file %s has mode %04o: group or others may read or replace the "
                    "server's private key; chmod 600 it", path, stat.S_IMODE(st.st_mode))
    return raw


@dataclass(frozen=True)
class ServerAddress:
    """A parsed self-certifying location: where to connect and which key to accept there."""
    host: str
    port: int
    fingerprint: str

    @classmethod
    def parse(cls, text: str) -> "ServerAddress":
        try:
            host, port, fp = text.rsplit(":", 2)
            host = host.strip("[]")
            port_n = int(port)
        except ValueError:
            raise ValueError(f"{text!r} is not host:port:fingerprint") from None
        if not 1 <= port_n <= 65535:
            raise ValueError(f"{text!r}: port {port_n} is out of range (1..65535)")
        if len(fp) != 32 or not all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in fp):
            raise ValueError(f"{fp!r} is not a 32-character base32 fingerprint")
        return cls(host, port_n, fp)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}:{self.fingerprint}"
