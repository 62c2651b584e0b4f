"""Passwords for people: argon2id, memory-hard, so a stolen table is slow to guess from.

Unlike the random bearer secrets (``secrets.py``), a password is chosen by a person and may
be weak: it gets a slow, salted hash, and checking an unknown address costs the same time as
checking a known one, so the answer's timing does not tell which addresses have accounts.

A hash costs about 0.2 s of CPU and 64 MiB: on the event loop it would stall every agent's
heartbeat for that long, once per sign-in attempt. The server therefore hashes and checks
through :func:`hash_off_loop` and :func:`matches_off_loop`, on two threads of their own
(argon2 releases the GIL), so a burst of attempts queues there instead of on the loop or on
the default executor that name resolution shares.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from wiremesh.server.errors import ApiError

MIN_LENGTH = 10
MAX_LENGTH = 1024
_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 "low memory" profile
HASHING_THREADS = 2
_hashing = ThreadPoolExecutor(max_workers=HASHING_THREADS, thread_name_prefix="wiremesh-argon2")


def validate_password(password: str) -> str:
    """The password, or 422 ``weak_password`` when too short (or absurdly long)."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ApiError(
            422,
            "weak_password",
            f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters",
        )
    return password


@functools.cache
def _unknown_user_hash() -> str:
    """Checked when a user has no hash, so unknown users cost the same. Made on first use:
    a hash is 0.2 s of CPU, which every process importing this module would pay at start."""
    return _hasher.hash("a password nobody has, checked so unknown users cost the same")


def hash_password(password: str) -> str:
    return _hasher.hash(validate_password(password))


def password_matches(password: str, stored_hash: str | None) -> bool:
    """Constant work whether or not the user has a password (an unknown hash is checked too)."""
    try:
        return _hasher.verify(stored_hash or _unknown_user_hash(), password) and (
            stored_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


async def hash_off_loop(password: str) -> str:
    """:func:`hash_password` on the hashing threads (a weak password is refused at once)."""
    validate_password(password)
    return await asyncio.get_running_loop().run_in_executor(_hashing, hash_password, password)


async def matches_off_loop(password: str, stored_hash: str | None) -> bool:
    """:func:`password_matches` on the hashing threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hashing, password_matches, password, stored_hash)
