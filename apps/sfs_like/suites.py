"""The two cipher suites that protect every frame after the handshake.

`sfs2003` is what SFS used: ARC4 for secrecy and a SHA-1 MAC (here HMAC-SHA1, encrypt-then-MAC),
so both passes touch every byte. `modern` is ChaCha20-Poly1305. Each direction of a connection has
its own keys and its own sequence number, and the sequence number is inside the MAC (or the AEAD
nonce): a replayed, dropped or reordered frame fails verification. The ARC4 keystream is one
sequential stream per direction, which is why a connection's crypto must run in order, on one color.

The bulk calls (`update`, `encrypt`) take whole frames, so cryptography releases the GIL for them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ._crypto_import import ARC4, ChaCha20Poly1305, Cipher, InvalidTag, hashes, hmac
from .framing import LENGTH

_SEQ_LEN = struct.Struct(">QI")      # what the MAC covers before the ciphertext: seq, frame length


class AuthError(Exception):
    """A frame failed its MAC: forged, replayed, reordered, or from a peer with other keys."""


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    key_bytes: int     # bytes of key material per direction
    overhead: int      # bytes a sealed frame adds to its plaintext


SUITES = {
    "sfs2003": SuiteSpec("sfs2003", 32 + 20, 20),   # 256-bit ARC4 key + 160-bit HMAC-SHA1 key
    "modern": SuiteSpec("modern", 32, 16),          # ChaCha20-Poly1305 key
}


class _Sfs2003Send:
    __slots__ = ("_enc", "_mac", "seq")

    def __init__(self, key: bytes) -> None:
        self._enc = Cipher(ARC4(key[:32]), mode=None).encryptor()
        self._mac = hmac.HMAC(key[32:], hashes.SHA1())
        self.seq = 0

    def seal(self, parts) -> list:
        """Encrypt and MAC the concatenation of `parts`; return the wire pieces (length first)."""
        length = sum(map(len, parts)) + 20
        header = LENGTH.pack(length)
        mac = self._mac.copy()
        mac.update(_SEQ_LEN.pack(self.seq, length))
        out = [header]
        for part in parts:
            ct = self._enc.update(part)
            mac.update(ct)
            out.append(ct)
        out.append(mac.finalize())
        self.seq += 1
        return out


class _Sfs2003Recv:
    __slots__ = ("_dec", "_mac", "seq")

    def __init__(self, key: bytes) -> None:
        self._dec = Cipher(ARC4(key[:32]), mode=None).decryptor()
        self._mac = hmac.HMAC(key[32:], hashes.SHA1())
        self.seq = 0

    def open(self, body: bytes) -> bytes:
        if len(body) < 20:
            raise AuthError(f"frame of {len(body)} bytes is shorter than its MAC")
        ct = memoryview(body)[:-20]
        mac = self._mac.copy()
        mac.update(_SEQ_LEN.pack(self.seq, len(body)))
        mac.update(ct)
        try:
            mac.verify(body[-20:])
        except Exception as exc:  # cryptography raises InvalidSignature
            raise AuthError(f"bad MAC on frame {self.seq} (forged, replayed or reordered)") from exc
        self.seq += 1
        return self._dec.update(ct)


class _ModernSend:
    __slots__ = ("_aead", "seq")

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.seq = 0

    def seal(self, parts) -> list:
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        header = LENGTH.pack(len(data) + 16)
        ct = self._aead.encrypt(self.seq.to_bytes(12, "big"), data, header)
        self.seq += 1
        return [header, ct]


class _ModernRecv:
    __slots__ = ("_aead", "seq")

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.seq = 0

    def open(self, body: bytes) -> bytes:
        try:
            plain = self._aead.decrypt(self.seq.to_bytes(12, "big"), body, LENGTH.pack(len(body)))
        except InvalidTag as exc:
            # The Poly1305 tag is this suite's MAC: the same words as sfs2003's, so one log line
            # (PROTOCOL.md's) means a failed frame whatever the suite.
            raise AuthError(f"bad MAC on frame {self.seq} (forged, replayed or reordered)") from exc
        self.seq += 1
        return plain


_SENDERS = {"sfs2003": _Sfs2003Send, "modern": _ModernSend}
_RECEIVERS = {"sfs2003": _Sfs2003Recv, "modern": _ModernRecv}


@dataclass
class Channel:
    """Both directions of one connection: `send.seal(parts)` and `recv.open(body)`."""
    suite: str
    send: object
    recv: object


def make_channel(suite: str, send_key: bytes, recv_key: bytes) -> Channel:
    spec = SUITES[suite]
    if len(send_key) != spec.key_bytes or len(recv_key) != spec.key_bytes:
        raise ValueError(f"{suite} needs {spec.key_bytes}-byte keys")
    return Channel(suite, _SENDERS[suite](send_key), _RECEIVERS[suite](recv_key))
