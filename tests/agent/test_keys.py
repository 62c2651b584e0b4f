"""WireGuard key pairs made on the device."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from wiremesh.agent.keys import InvalidKey, decode_key, generate_keypair, public_key_of

# RFC 7748, section 6.1: Alice's key pair.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_public_key_matches_the_rfc_7748_vectors() -> None:
    assert public_key_of(b64(ALICE_PRIVATE)) == b64(ALICE_PUBLIC)
    assert public_key_of(b64(BOB_PRIVATE)) == b64(BOB_PUBLIC)


@given(st.binary(min_size=32, max_size=32))
def test_public_key_matches_openssl_for_any_private_key(raw: bytes) -> None:
    """Unclamped bytes too: both clamp as RFC 7748 says."""
    expected = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    assert public_key_of(b64(raw)) == b64(expected)


def test_generated_keys_are_in_wireguard_format_and_clamped() -> None:
    pair = generate_keypair()
    for text in (pair.private_key, pair.public_key):
        assert len(text) == 44
        assert text.endswith("=")
    raw = decode_key(pair.private_key)
    assert raw[0] & 7 == 0
    assert raw[31] & 0x80 == 0
    assert raw[31] & 0x40 == 0x40
    assert public_key_of(pair.private_key) == pair.public_key


def test_every_key_pair_is_new() -> None:
    assert len({generate_keypair().private_key for _ in range(20)}) == 20


def test_the_private_key_is_not_in_the_repr() -> None:
    pair = generate_keypair()
    assert pair.private_key not in repr(pair)
    assert pair.public_key in repr(pair)


@pytest.mark.parametrize("text", ["", "not base64!", b64(b"short"), b64(bytes(33))])
def test_malformed_keys_are_refused(text: str) -> None:
    with pytest.raises(InvalidKey):
        decode_key(text)
