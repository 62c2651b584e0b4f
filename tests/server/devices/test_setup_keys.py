"""Setup keys: who may make them, how they are stored, and when they stop enrolling."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_token, make_user
from tests.support.live import OrgFixture, create_setup_key, enroll
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import SetupKey
from wiremesh.server.orgs.models import Organization, OrgRole


async def _try_enroll(client: httpx.AsyncClient, key: str, hostname: str) -> httpx.Response:
    return await client.post("/api/v1/enroll", json={"setup_key": key, "hostname": hostname})


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_setup_key"


async def _keys(client: httpx.AsyncClient, org: OrgFixture) -> list[dict[str, object]]:
    listed = await client.get(
        f"/api/v1/orgs/{org.org_id}/setup-keys", headers=auth(org.admin_token)
    )
    assert listed.status_code == 200
    keys: list[dict[str, object]] = listed.json()
    return keys


async def test_one_off_and_reusable_keys(client: httpx.AsyncClient, org: OrgFixture) -> None:
    one_off = await create_setup_key(client, org, reusable=False)
    await enroll(client, one_off, "first")
    _refused(await _try_enroll(client, one_off, "second"))
    reusable = await create_setup_key(client, org, reusable=True)
    for index in range(3):
        await enroll(client, reusable, f"host{index}")
    keys = await _keys(client, org)
    assert [(k["reusable"], k["used_count"], k["usage_limit"], k["usable"]) for k in keys] == [
        (False, 1, 1, False),
        (True, 3, None, True),
    ]


async def test_expired_and_revoked_keys_are_refused(
    client: httpx.AsyncClient, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await client.post(
        f"/api/v1/orgs/{org.org_id}/setup-keys",
        json={"name": "short", "reusable": True, "expires_in_seconds": 60},
        headers=auth(org.admin_token),
    )
    assert created.status_code == 201
    expiring = created.json()["key"]
    await enroll(client, expiring, "in-time")
    async with sessionmaker() as session:
        await session.execute(
            update(SetupKey)
            .where(SetupKey.id == created.json()["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    _refused(await _try_enroll(client, expiring, "too-late"))

    revocable = await create_setup_key(client, org)
    enrolled = await enroll(client, revocable, "before")
    key_id = (await _keys(client, org))[1]["id"]
    revoked = await client.delete(
        f"/api/v1/orgs/{org.org_id}/setup-keys/{key_id}", headers=auth(org.admin_token)
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    _refused(await _try_enroll(client, revocable, "after"))
    assert [k["usable"] for k in await _keys(client, org)] == [False, False]
    # The devices it enrolled stay.
    device = enrolled["device"]
    assert isinstance(device, dict)
    still = await client.get(
        f"/api/v1/orgs/{org.org_id}/devices/{device['id']}", headers=auth(org.admin_token)
    )
    assert still.status_code == 200
    assert still.json()["revoked"] is False
    missing = await client.delete(
        f"/api/v1/orgs/{org.org_id}/setup-keys/999999", headers=auth(org.admin_token)
    )
    assert missing.status_code == 404


async def test_keys_are_stored_hashed_and_never_listed(
    client: httpx.AsyncClient, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await create_setup_key(client, org)
    secret_part = key.rsplit("_", 1)[1]
    async with sessionmaker() as session:
        row = (await session.execute(text("SELECT * FROM setup_key"))).mappings().one()
    values = [str(value) for value in row.values()]
    assert not any(key in value or secret_part in value for value in values), values
    assert len(row["secret_hash"]) == 64
    listed = await client.get(
        f"/api/v1/orgs/{org.org_id}/setup-keys", headers=auth(org.admin_token)
    )
    assert key not in listed.text
    assert secret_part not in listed.text
    assert "key" not in listed.json()[0]
    assert "secret_hash" not in listed.text
    # A key that is almost right, or not shaped like one, is refused the same way.
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    for bad in [tampered, "wmk_nope", "not-a-key", "wm_" + key[4:]]:
        _refused(await _try_enroll(client, bad, "intruder"))


async def test_only_org_admins_manage_keys(
    client: httpx.AsyncClient, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        organization = await session.get(Organization, org.org_id)
        assert organization is not None
        member = await make_user(session)
        await make_member(session, organization, member, OrgRole.MEMBER)
        member_token = await make_token(session, member)
        outsider_token = await make_token(session, await make_user(session))
        await session.commit()
    url = f"/api/v1/orgs/{org.org_id}/setup-keys"
    created = await client.post(
        url, json={"name": "mine", "reusable": True}, headers=auth(member_token)
    )
    assert created.status_code == 403
    assert created.json()["error"]["code"] == "forbidden"
    assert (await client.get(url, headers=auth(member_token))).status_code == 403
    outsider = await client.post(url, json={"name": "x"}, headers=auth(outsider_token))
    assert outsider.status_code == 404
    assert await _keys(client, org) == []


async def test_validation_errors_are_422_with_codes(
    client: httpx.AsyncClient, org: OrgFixture
) -> None:
    url = f"/api/v1/orgs/{org.org_id}/setup-keys"
    headers = auth(org.admin_token)
    one_off = await client.post(
        url, json={"name": "x", "reusable": False, "usage_limit": 5}, headers=headers
    )
    assert one_off.status_code == 422
    assert one_off.json()["error"]["code"] == "invalid_usage_limit"
    short = await client.post(url, json={"name": "x", "expires_in_seconds": 30}, headers=headers)
    assert short.status_code == 422
    error = short.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == ["expires_in_seconds"]
    for body in (
        {"name": ""},
        {"name": "x", "usage_limit": 0},
        {"name": "x", "surprise": True},
        {"name": "x", "expires_in_seconds": 10**12},
    ):
        response = await client.post(url, json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    stranger = await client.post(url, json={"name": "x", "user_id": 999_999}, headers=headers)
    assert stranger.status_code == 422
    assert stranger.json()["error"]["code"] == "not_a_member"
    for impossible in (0, -1, 2**31, 10**20):  # never sent to SQL, where 10**20 overflowed
        response = await client.post(
            url, json={"name": "x", "user_id": impossible}, headers=headers
        )
        assert response.status_code == 422, impossible
        error = response.json()["error"]
        assert (error["code"], [d["field"] for d in error["details"]]) == (
            "validation_error",
            ["user_id"],
        )
    assert await _keys(client, org) == []

    key = await create_setup_key(client, org)
    for enroll_body in (
        {"setup_key": key, "hostname": "-bad"},
        {"setup_key": key, "hostname": "x" * 64},
        {"setup_key": key, "hostname": "ok", "public_key": "short"},
        {"setup_key": key},
    ):
        response = await client.post("/api/v1/enroll", json=enroll_body)
        assert response.status_code == 422, enroll_body
        assert response.json()["error"]["code"] == "validation_error"
    assert (await _keys(client, org))[0]["used_count"] == 0


async def test_a_server_administrator_outside_the_org_makes_keys_for_its_first_owner(
    client: httpx.AsyncClient, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        organization = await session.get(Organization, org.org_id)
        assert organization is not None
        later_owner = await make_user(session)
        await make_member(session, organization, later_owner, OrgRole.OWNER)
        member = await make_user(session)
        await make_member(session, organization, member, OrgRole.MEMBER)
        later_owner_token = await make_token(session, later_owner)
        admin = auth(await make_token(session, await make_user(session, server_admin=True)))
        await session.commit()
    url = f"/api/v1/orgs/{org.org_id}/setup-keys"
    members = (await client.get(f"/api/v1/orgs/{org.org_id}/members", headers=admin)).json()
    first_owner = members[0]["user_id"]
    assert members[0]["role"] == "owner"
    assert first_owner != later_owner.id

    created = await client.post(url, json={"name": "ops", "reusable": True}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == first_owner
    enrolled = await client.post(
        "/api/v1/enroll", json={"setup_key": created.json()["key"], "hostname": "laptop"}
    )
    assert enrolled.json()["device"]["user_id"] == first_owner
    named = await client.post(url, json={"name": "x", "user_id": member.id}, headers=admin)
    assert named.status_code == 201, named.text
    assert named.json()["user_id"] == member.id
    # A member making a key still owns its devices, as before.
    mine = await client.post(url, json={"name": "mine"}, headers=auth(later_owner_token))
    assert mine.json()["user_id"] == later_owner.id


async def test_a_key_for_an_org_without_owner_needs_a_user_id(
    client: httpx.AsyncClient, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        admin = auth(await make_token(session, await make_user(session, server_admin=True)))
        member = await make_user(session)
        await session.commit()
    created = await client.post("/api/v1/orgs", json={"name": "ownerless"}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["role"] is None
    org_id = created.json()["id"]
    url = f"/api/v1/orgs/{org_id}/setup-keys"
    refused = await client.post(url, json={"name": "x"}, headers=admin)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "no_owner"
    assert "pass user_id" in error["message"]
    assert (await client.get(url, headers=admin)).json() == []
    added = await client.post(
        f"/api/v1/orgs/{org_id}/members", json={"user_id": member.id}, headers=admin
    )
    assert added.status_code == 201, added.text
    named = await client.post(url, json={"name": "x", "user_id": member.id}, headers=admin)
    assert named.status_code == 201, named.text
    assert named.json()["user_id"] == member.id
