"""The one place that imports `cryptography`, so a missing build fails with a message that says why.

`cryptography` publishes no wheel for the free-threaded CPython 3.13t; the runtime and the web server
run there, this server cannot. Without this check the error would be a bare ModuleNotFoundError deep
inside the handshake code.
"""
from __future__ import annotations

import sys
import sysconfig

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers import Cipher
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.exceptions import InvalidTag
except ImportError as exc:  # pragma: no cover - depends on the interpreter
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        raise ImportError(
            "apps.sfs_like needs the `cryptography` package, which has no build for the free-threaded "
            f"CPython {sys.version_info.major}.{sys.version_info.minor}t running now. Run the SFS-like "
            "server, client and benchmark with the stock CPython 3.11 venv (.venv/bin/python); only the "
            "runtime and the web server run on 3.13t.") from exc
    raise ImportError(f"apps.sfs_like needs `cryptography` (pinned in pyproject.toml): {exc}") from exc

__all__ = ["ARC4", "hashes", "hmac", "X25519PrivateKey", "X25519PublicKey", "Cipher",
           "ChaCha20Poly1305", "HKDF", "InvalidTag"]
