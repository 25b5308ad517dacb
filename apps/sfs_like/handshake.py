"""Session set-up: an X25519 exchange that only the holder of the pinned long-term key can finish.

Client hello (plaintext frame):  MAGIC | u8 suite length | suite name | client ephemeral public (32)
Server hello (plaintext frame):  MAGIC | 0x00 | server long-term public (32) | server ephemeral public (32)
                            or:  MAGIC | 0x01 | UTF-8 reason       (then the server closes)
Keys: HKDF-SHA256(ikm = DH(c_eph, s_eph) || DH(c_eph, s_longterm), salt = SHA-256(client hello ||
server hello), info = "sfs-like v1 " + suite) -> client-to-server key || server-to-client key.
The server then sends the first sealed frame, READY || salt, which proves it holds the long-term
private key (DH(c_eph, s_longterm) is in the keys) before the client sends anything secret.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ._crypto_import import HKDF, X25519PrivateKey, X25519PublicKey, hashes
from .keys import fingerprint
from .suites import SUITES, Channel, make_channel

MAGIC = b"SFSLIKE1"
READY = b"READY"


class HandshakeError(Exception):
    """The peer did not speak the handshake, asked for something refused, or is not who it claims."""


class FingerprintMismatch(HandshakeError):
    pass


def _derive(suite: str, ikm: bytes, transcript: bytes) -> tuple[bytes, bytes]:
    n = SUITES[suite].key_bytes
    okm = HKDF(algorithm=hashes.SHA256(), length=2 * n, salt=transcript,
               info=b"sfs-like v1 " + suite.encode()).derive(ikm)
    return okm[:n], okm[n:]


@dataclass
class ClientHandshake:
    suite: str
    hello: bytes
    _eph: X25519PrivateKey

    @classmethod
    def start(cls, suite: str) -> "ClientHandshake":
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; choose one of {sorted(SUITES)}")
        eph = X25519PrivateKey.generate()
        name = suite.encode()
        return cls(suite, MAGIC + bytes([len(name)]) + name + eph.public_key().public_bytes_raw(), eph)

    def finish(self, reply: bytes, expected_fp: str) -> tuple[Channel, bytes]:
        """Check the server hello against the pinned fingerprint; return the channel and transcript."""
        if not reply.startswith(MAGIC) or len(reply) < len(MAGIC) + 1:
            raise HandshakeError("server did not answer with an SFS-like hello")
        status, rest = reply[len(MAGIC)], reply[len(MAGIC) + 1:]
        if status == 1:
            raise HandshakeError("server refused the session: " + rest.decode("utf-8", "replace"))
        if status != 0 or len(rest) != 64:
            raise HandshakeError("malformed server hello")
        static_pub, eph_pub = rest[:32], rest[32:]
        got = fingerprint(static_pub)
        if got != expected_fp:
            raise FingerprintMismatch(f"server key fingerprint is {got}, the pathname pins {expected_fp}")
        try:    # a low-order point (all zeros...) gives no shared secret: ValueError
            ikm = (self._eph.exchange(X25519PublicKey.from_public_bytes(eph_pub))
                   + self._eph.exchange(X25519PublicKey.from_public_bytes(static_pub)))
        except ValueError:
            raise HandshakeError("server's ephemeral key is not a usable X25519 key") from None
        transcript = hashlib.sha256(self.hello + reply).digest()
        c2s, s2c = _derive(self.suite, ikm, transcript)
        return make_channel(self.suite, c2s, s2c), transcript


def refusal(reason: str) -> bytes:
    return MAGIC + b"\x01" + reason.encode()


def server_respond(static_key: X25519PrivateKey, static_pub: bytes, hello: bytes,
                   allowed_suites) -> tuple[bytes, Channel, bytes]:
    """Answer a client hello: (server hello to send, channel, transcript). Raises HandshakeError."""
    if not hello:
        raise HandshakeError("empty client hello")
    if not hello.startswith(MAGIC):
        raise HandshakeError(f"bad magic {hello[:8]!r} (garbage before the handshake?)")
    rest = hello[len(MAGIC):]
    if not rest or len(rest) != 1 + rest[0] + 32:
        raise HandshakeError("malformed client hello")
    suite = rest[1:1 + rest[0]].decode("ascii", "replace")
    if suite not in allowed_suites:
        raise HandshakeError(f"suite {suite!r} not offered here (offered: {', '.join(sorted(allowed_suites))})")
    client_eph = X25519PublicKey.from_public_bytes(rest[1 + rest[0]:])
    eph = X25519PrivateKey.generate()
    reply = MAGIC + b"\x00" + static_pub + eph.public_key().public_bytes_raw()
    ikm = eph.exchange(client_eph) + static_key.exchange(client_eph)
    transcript = hashlib.sha256(hello + reply).digest()
    c2s, s2c = _derive(suite, ikm, transcript)
    return reply, make_channel(suite, s2c, c2s), transcript
