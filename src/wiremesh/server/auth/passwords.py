"""Passwords for people: argon2id, memory-hard, so a stolen table is slow to guess from.

Unlike the random bearer secrets (``secrets.py``), a password is chosen by a person and may
be weak: it gets a slow, salted hash, and checking an unknown address costs the same time as
checking a known one, so the answer's timing does not tell which addresses have accounts.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from wiremesh.server.errors import ApiError

MIN_LENGTH = 10
MAX_LENGTH = 1024
_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 "low memory" profile
_UNKNOWN_USER_HASH = _hasher.hash("a password nobody has, checked so unknown users cost the same")


def validate_password(password: str) -> str:
    """The password, or 422 ``weak_password`` when too short (or absurdly long)."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ApiError(
            422,
            "weak_password",
            f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters",
        )
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(validate_password(password))


def password_matches(password: str, stored_hash: str | None) -> bool:
    """Constant work whether or not the user has a password (an unknown hash is checked too)."""
    try:
        return _hasher.verify(stored_hash or _UNKNOWN_USER_HASH, password) and (
            stored_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False
