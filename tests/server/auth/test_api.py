"""API tokens over HTTP: issued once, listed without secrets, revoked for good."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_token, make_user
from wiremesh.server.auth.models import ApiToken
from wiremesh.server.auth.service import create_token
from wiremesh.server.db.base import utcnow

API = "/api/v1"


async def test_create_token_shows_the_secret_once(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    headers = auth(await make_token(session, user))
    await session.commit()
    response = await client.post(f"{API}/tokens", json={"name": " laptop "}, headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == "laptop"
    assert created["expires_at"] is None
    secret = created["token"]
    me = await client.get(f"{API}/users/me", headers=auth(secret))
    assert me.json()["id"] == user.id

    listed = await client.get(f"{API}/tokens", headers=headers)
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()] == ["test", "laptop"]
    assert secret not in listed.text
    assert secret.split("_", 2)[2] not in listed.text
    assert all("token" not in t and "secret_hash" not in t for t in listed.json())


async def test_expiring_token(client: httpx.AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    headers = auth(await make_token(session, user))
    await session.commit()
    before = utcnow()
    response = await client.post(
        f"{API}/tokens", json={"name": "ci", "expires_in_days": 7}, headers=headers
    )
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert before + timedelta(days=7) <= expires <= utcnow() + timedelta(days=7)


async def test_tokens_list_only_your_own(client: httpx.AsyncClient, session: AsyncSession) -> None:
    alice, bob = await make_user(session), await make_user(session)
    alice_headers = auth(await make_token(session, alice))
    await create_token(session, bob, "bobs")
    await session.commit()
    names = [t["name"] for t in (await client.get(f"{API}/tokens", headers=alice_headers)).json()]
    assert names == ["test"]


async def test_revoke_own_token(
    client: httpx.AsyncClient, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    user = await make_user(session)
    keep = auth(await make_token(session, user))
    token, plaintext = await create_token(session, user, "old")
    await session.commit()
    assert (await client.get(f"{API}/users/me", headers=auth(plaintext))).status_code == 200
    response = await client.delete(f"{API}/tokens/{token.id}", headers=keep)
    assert response.status_code == 204
    refused = await client.get(f"{API}/users/me", headers=auth(plaintext))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"
    again = await client.delete(f"{API}/tokens/{token.id}", headers=keep)
    assert again.status_code == 204
    async with sessionmaker() as check:
        stored = await check.get(ApiToken, token.id)
        assert stored is not None
        assert stored.revoked_at is not None
    listed = (await client.get(f"{API}/tokens", headers=keep)).json()
    assert [t["revoked_at"] is not None for t in listed] == [False, True]


async def test_a_token_can_revoke_itself(client: httpx.AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    token, plaintext = await create_token(session, user, "self")
    await session.commit()
    response = await client.delete(f"{API}/tokens/{token.id}", headers=auth(plaintext))
    assert response.status_code == 204
    assert (await client.get(f"{API}/tokens", headers=auth(plaintext))).status_code == 401


async def test_others_tokens_look_missing_except_to_server_admins(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    alice, bob = await make_user(session), await make_user(session)
    admin = await make_user(session, server_admin=True)
    alice_headers = auth(await make_token(session, alice))
    admin_headers = auth(await make_token(session, admin))
    bobs, bob_plain = await create_token(session, bob, "bobs")
    await session.commit()
    refused = await client.delete(f"{API}/tokens/{bobs.id}", headers=alice_headers)
    assert refused.status_code == 404
    assert (await client.get(f"{API}/users/me", headers=auth(bob_plain))).status_code == 200
    revoked = await client.delete(f"{API}/tokens/{bobs.id}", headers=admin_headers)
    assert revoked.status_code == 204
    assert (await client.get(f"{API}/users/me", headers=auth(bob_plain))).status_code == 401


async def test_inactive_users_tokens_stop_working(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    plaintext = await make_token(session, user)
    user.is_active = False
    await session.commit()
    response = await client.get(f"{API}/users/me", headers=auth(plaintext))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
