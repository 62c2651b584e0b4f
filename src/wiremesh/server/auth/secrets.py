"""Bearer secrets (API tokens, setup keys, device credentials): made, hashed and checked.

A secret looks like ``<kind>_<lookup>_<random>``. The lookup part finds the row without a scan;
only a SHA-256 of the whole secret is stored (the secrets are 256-bit random, so a slow hash
buys nothing), and the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

LOOKUP_LENGTH = 12


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A freshly made secret: the plaintext is shown once, the rest is stored."""

    plaintext: str
    lookup: str
    secret_hash: str


def hash_secret(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def issue_secret(kind: str) -> IssuedSecret:
    lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
    plaintext = f"{kind}_{lookup}_{secrets.token_urlsafe(32)}"
    return IssuedSecret(plaintext=plaintext, lookup=lookup, secret_hash=hash_secret(plaintext))


def parse_lookup(kind: str, plaintext: str) -> str | None:
    """The lookup part of a secret of this kind, or None when it is not shaped like one."""
    prefix = f"{kind}_"
    if not plaintext.startswith(prefix) or len(plaintext) > 256:
        return None
    lookup, sep, rest = plaintext[len(prefix) :].partition("_")
    if not sep or not rest or len(lookup) != LOOKUP_LENGTH:
        return None
    return lookup


def secret_matches(plaintext: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(plaintext), stored_hash)
