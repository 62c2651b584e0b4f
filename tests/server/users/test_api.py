"""Users over HTTP: server administrators manage them; anyone sees themselves."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.users.models import User

API = "/api/v1"


async def admin_and_user(session: AsyncSession) -> tuple[dict[str, str], dict[str, str], User]:
    admin = await make_user(session, server_admin=True)
    user = await make_user(session)
    headers = auth(await make_token(session, admin)), auth(await make_token(session, user))
    await session.commit()
    return headers[0], headers[1], user


async def test_create_user(
    client: httpx.AsyncClient, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    admin, _user, _ = await admin_and_user(session)
    response = await client.post(
        f"{API}/users",
        json={"email": "New.Person@Example.COM", "name": "  New Person "},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "new.person@example.com"
    assert body["name"] == "New Person"
    assert body["is_server_admin"] is False
    assert body["is_active"] is True
    async with sessionmaker() as check:
        stored = await check.get(User, body["id"])
        assert stored is not None
        assert stored.email == "new.person@example.com"


async def test_create_server_admin(client: httpx.AsyncClient, session: AsyncSession) -> None:
    admin, _user, _ = await admin_and_user(session)
    response = await client.post(
        f"{API}/users",
        json={"email": "boss@example.com", "name": "Boss", "is_server_admin": True},
        headers=admin,
    )
    assert response.status_code == 201
    assert response.json()["is_server_admin"] is True


async def test_duplicate_email_is_a_conflict(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin, _user, user = await admin_and_user(session)
    response = await client.post(
        f"{API}/users", json={"email": user.email.upper(), "name": "Twin"}, headers=admin
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


async def test_only_server_admins_manage_users(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    _admin, user_headers, user = await admin_and_user(session)
    attempts = [
        client.post(
            f"{API}/users", json={"email": "x@example.com", "name": "X"}, headers=user_headers
        ),
        client.get(f"{API}/users", headers=user_headers),
        client.get(f"{API}/users/{user.id}", headers=user_headers),
        client.delete(f"{API}/users/{user.id}", headers=user_headers),
    ]
    for attempt in attempts:
        response = await attempt
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


async def test_list_and_get(client: httpx.AsyncClient, session: AsyncSession) -> None:
    admin, _user, user = await admin_and_user(session)
    listed = await client.get(f"{API}/users", headers=admin)
    assert [u["email"] for u in listed.json()][-1] == user.email
    assert len(listed.json()) == 2
    assert len((await client.get(f"{API}/users?limit=1", headers=admin)).json()) == 1
    one = await client.get(f"{API}/users/{user.id}", headers=admin)
    assert one.json()["id"] == user.id
    assert (await client.get(f"{API}/users/999999", headers=admin)).status_code == 404


async def test_me(client: httpx.AsyncClient, session: AsyncSession) -> None:
    _admin, user_headers, user = await admin_and_user(session)
    response = await client.get(f"{API}/users/me", headers=user_headers)
    assert response.status_code == 200
    assert response.json()["id"] == user.id
    assert (await client.get(f"{API}/users/me")).status_code == 401


async def test_delete_user(
    client: httpx.AsyncClient, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    admin, user_headers, user = await admin_and_user(session)
    response = await client.delete(f"{API}/users/{user.id}", headers=admin)
    assert response.status_code == 204
    async with sessionmaker() as check:
        assert await check.get(User, user.id) is None
    assert (await client.get(f"{API}/users/me", headers=user_headers)).status_code == 401
    assert (await client.delete(f"{API}/users/{user.id}", headers=admin)).status_code == 404


async def test_delete_refusals(client: httpx.AsyncClient, session: AsyncSession) -> None:
    admin_user = await make_user(session, server_admin=True)
    admin = auth(await make_token(session, admin_user))
    owner = await make_user(session)
    org = await make_org(session, name="solo")
    await make_member(session, org, owner, OrgRole.OWNER)
    await session.commit()
    self_delete = await client.delete(f"{API}/users/{admin_user.id}", headers=admin)
    assert self_delete.status_code == 409
    assert self_delete.json()["error"]["code"] == "cannot_delete_self"
    sole_owner = await client.delete(f"{API}/users/{owner.id}", headers=admin)
    assert sole_owner.status_code == 409
    assert sole_owner.json()["error"]["code"] == "last_owner"
    assert "solo" in sole_owner.json()["error"]["message"]
