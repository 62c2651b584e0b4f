"""Passwords: argon2id hashes, weak ones refused, and a missing hash never matches."""

from __future__ import annotations

import asyncio

import pytest

from wiremesh.server.auth.passwords import (
    MIN_LENGTH,
    hash_off_loop,
    hash_password,
    matches_off_loop,
    password_matches,
)
from wiremesh.server.auth.websessions import csrf_matches, csrf_token
from wiremesh.server.errors import ApiError


def test_a_password_is_hashed_with_argon2id_and_salted() -> None:
    first = hash_password("correct horse battery")
    second = hash_password("correct horse battery")
    assert first.startswith("$argon2id$")
    assert first != second
    assert password_matches("correct horse battery", first)
    assert not password_matches("correct horse batterY", first)


def test_a_short_password_is_refused() -> None:
    with pytest.raises(ApiError) as refused:
        hash_password("x" * (MIN_LENGTH - 1))
    assert refused.value.code == "weak_password"


def test_no_hash_and_a_broken_hash_match_nothing() -> None:
    assert not password_matches("", None)
    assert not password_matches(
        "a password nobody has, checked so unknown users cost the same", None
    )
    assert not password_matches("anything-at-all", "not a hash")


def test_a_csrf_token_belongs_to_one_session_secret() -> None:
    token = csrf_token("wms_one")
    assert csrf_matches("wms_one", token)
    assert not csrf_matches("wms_two", token)
    assert not csrf_matches("wms_one", token[:-1] + ("0" if token[-1] != "0" else "1"))


async def test_the_server_hashes_and_checks_off_the_event_loop() -> None:
    hashed = await hash_off_loop("correct horse battery")
    assert password_matches("correct horse battery", hashed)
    assert await matches_off_loop("correct horse battery", hashed)
    assert not await matches_off_loop("correct horse batterY", hashed)
    with pytest.raises(ApiError):
        await hash_off_loop("short")
    # While a check runs, the loop goes on turning (on the loop itself, the check would have
    # finished inside the first turn, before any other coroutine ran).
    check = asyncio.create_task(matches_off_loop("correct horse battery", hashed))
    turns = 0
    while not check.done():
        await asyncio.sleep(0.001)
        turns += 1
    assert check.result()
    assert turns > 3
