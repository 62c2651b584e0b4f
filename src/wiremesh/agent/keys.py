"""WireGuard key pairs (Curve25519), generated on the device: the private key stays here."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

__all__ = ["InvalidKey", "KeyPair", "decode_key", "generate_keypair", "public_key_of"]

KEY_BYTES = 32


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


def public_key_of(private_key: str) -> str:
    """The public key that belongs to a base64 private key."""
    key = X25519PrivateKey.from_private_bytes(decode_key(private_key))
    return base64.b64encode(key.public_key().public_bytes_raw()).decode("ascii")


def generate_keypair() -> KeyPair:
    """A fresh key pair from the operating system's CSPRNG."""
    raw = _clamp(X25519PrivateKey.generate().private_bytes_raw())
    private_key = base64.b64encode(raw).decode("ascii")
    return KeyPair(private_key=private_key, public_key=public_key_of(private_key))
