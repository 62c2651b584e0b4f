"""WireGuard key pairs (Curve25519), generated on the device: the private key stays here.

A new private key comes from ``cryptography`` (the operating system's CSPRNG). The public
key of a stored private key is computed here, in Python (RFC 7748's Montgomery ladder on
the base point), because the long-running agent needs only that, to check that its key file
and state file belong together: importing ``cryptography`` and OpenSSL for it would add
9 MiB to the agent's resident memory for good. It runs once at start and once per rotation
(a few milliseconds), on the device's own key; ``tests/agent/test_keys.py`` checks it
against RFC 7748's vectors and against ``cryptography`` for random keys.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Final

__all__ = ["InvalidKey", "KeyPair", "decode_key", "generate_keypair", "public_key_of"]

KEY_BYTES = 32
_P: Final = 2**255 - 19
_A24: Final = 121665
_BASE_U: Final = 9


class InvalidKey(ValueError):
    """Not a WireGuard key (32 bytes in standard base64)."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A device's key pair in WireGuard's text format (base64 of 32 bytes, 44 characters)."""

    private_key: str = field(repr=False)
    public_key: str


def decode_key(text: str) -> bytes:
    """The 32 raw bytes of a base64 WireGuard key; raises :class:`InvalidKey`."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("not a WireGuard key: expected base64") from None
    if len(raw) != KEY_BYTES:
        raise InvalidKey("not a WireGuard key: expected 32 bytes")
    return raw


def _clamp(raw: bytes) -> bytes:
    """Clamp a Curve25519 scalar the way ``wg genkey`` does (RFC 7748, section 5)."""
    scalar = bytearray(raw)
    scalar[0] &= 248
    scalar[31] = (scalar[31] & 127) | 64
    return bytes(scalar)


def _x25519_base(scalar: bytes) -> bytes:
    """X25519(scalar, 9): RFC 7748, section 5, with the scalar clamped as it specifies."""
    k = int.from_bytes(_clamp(scalar), "little")
    x1 = _BASE_U
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % _P, (x2 - z2) % _P
        aa, bb = a * a % _P, b * b % _P
        e = (aa - bb) % _P
        c, d = (x3 + z3) % _P, (x3 - z3) % _P
        da, cb = d * a % _P, c * b % _P
        x3 = (da + cb) ** 2 % _P
        z3 = x1 * (da - cb) ** 2 % _P
        x2 = aa * bb % _P
        z2 = e * (aa + _A24 * e) % _P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(KEY_BYTES, "little")


def public_key_of(private_key: str) -> str:
    """The public key that belongs to a base64 private key."""
    return base64.b64encode(_x25519_base(decode_key(private_key))).decode("ascii")


def generate_keypair() -> KeyPair:
    """A fresh key pair from the operating system's CSPRNG."""
    # Imported here: only enrollment, rotation and relays make keys (see the module doc).
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    private_key = base64.b64encode(_clamp(key.private_bytes_raw())).decode("ascii")
    # The library's public key (clamping does not change it): new keys never depend on
    # the ladder above, which only checks the stored one.
    public_key = base64.b64encode(key.public_key().public_bytes_raw()).decode("ascii")
    return KeyPair(private_key=private_key, public_key=public_key)
