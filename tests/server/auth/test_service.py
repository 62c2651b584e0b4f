"""Tokens service: authenticate, issue, list, revoke."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_user
from wiremesh.server.auth import service
from wiremesh.server.auth.principal import Principal, operator_principal
from wiremesh.server.auth.secrets import hash_secret
from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import ApiError


async def refused(session: AsyncSession, plaintext: str) -> None:
    with pytest.raises(ApiError) as info:
        await service.authenticate_token(session, plaintext)
    assert (info.value.status, info.value.code) == (401, "invalid_token")


async def test_only_the_hash_is_stored_and_the_token_authenticates(session: AsyncSession) -> None:
    user = await make_user(session)
    token, plaintext = await service.issue_token(session, user, "t")
    assert plaintext.startswith("wm_")
    assert token.secret_hash == hash_secret(plaintext)
    assert plaintext not in (token.secret_hash, token.lookup, token.name)
    found, owner = await service.authenticate_token(session, plaintext)
    assert (found.id, owner.id) == (token.id, user.id)


async def test_wrong_expired_and_revoked_tokens_look_the_same(session: AsyncSession) -> None:
    user = await make_user(session)
    _token, plaintext = await service.issue_token(session, user, "t")
    await refused(session, plaintext[:-1] + ("a" if plaintext[-1] != "a" else "b"))
    await refused(session, "wm_short")
    await refused(session, "x" * 1000)
    _expired, expired_plain = await service.create_token(
        session, user, "old", expires_at=utcnow() - timedelta(seconds=1)
    )
    await refused(session, expired_plain)
    revoked = await service.revoke_token(session, operator_principal(), _token.id)
    assert revoked.revoked_at is not None
    await refused(session, plaintext)


async def test_expiry_in_days(session: AsyncSession) -> None:
    user = await make_user(session)
    token, _plaintext = await service.issue_token(session, user, "t", expires_in_days=2)
    assert token.expires_at is not None
    assert abs((token.expires_at - utcnow()) - timedelta(days=2)) < timedelta(minutes=1)


async def test_revoke_is_limited_to_your_own_tokens(session: AsyncSession) -> None:
    alice, bob = await make_user(session), await make_user(session)
    token, _plaintext = await service.issue_token(session, bob, "t")
    with pytest.raises(ApiError) as info:
        await service.revoke_token(
            session, Principal(user_id=alice.id, is_server_admin=False, token_id=1), token.id
        )
    assert info.value.code == "not_found"
    assert token.revoked_at is None
    first = await service.revoke_token(
        session, Principal(user_id=bob.id, is_server_admin=False, token_id=1), token.id
    )
    when = first.revoked_at
    second = await service.revoke_token(session, operator_principal(), token.id)
    assert second.revoked_at == when
    assert [t.id for t in await service.list_tokens(session, bob.id)] == [token.id]
    assert list(await service.list_tokens(session, alice.id)) == []
