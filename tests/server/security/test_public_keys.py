"""WireGuard public keys are unique within an organization, enforced by the database (issue
#12: two devices of an org could enroll with one key, and ``PUT /agent/public-key`` took
another device's key)."""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.devices.models import SetupKey, VirtualIPMapping
from wiremesh.server.orgs.models import OrgRole


def _key(fill: int) -> str:
    return base64.b64encode(bytes([fill]) * 32).decode()


async def _org_key(client: httpx.AsyncClient, session: AsyncSession, network: str) -> str:
    """A reusable setup key of a new organization."""
    owner = await make_user(session)
    org = await make_org(session, network_cidr=network)
    await make_member(session, org, owner, OrgRole.OWNER)
    token = await make_token(session, owner)
    await session.commit()
    response = await client.post(
        f"/api/v1/orgs/{org.id}/setup-keys",
        json={"name": "fleet", "reusable": True},
        headers=auth(token),
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


async def _enroll(
    client: httpx.AsyncClient, setup_key: str, hostname: str, public_key: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/enroll",
        json={"setup_key": setup_key, "hostname": hostname, "public_key": public_key},
    )


async def _counts(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, list[int]]:
    async with sessionmaker() as session:
        devices = (
            await session.execute(select(func.count()).select_from(VirtualIPMapping))
        ).scalar_one()
        used = list((await session.execute(select(SetupKey.used_count))).scalars())
        return devices, used


async def test_a_key_taken_in_the_org_is_refused_at_enrollment(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    setup_key = await _org_key(client, session, "100.64.0.0/24")
    assert (await _enroll(client, setup_key, "first", _key(1))).status_code == 201
    before = await _counts(sessionmaker)

    response = await _enroll(client, setup_key, "second", _key(1))
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "public_key_taken"
    assert "IntegrityError" not in response.text
    assert await _counts(sessionmaker) == before  # no device, no use of the key

    other_org_key = await _org_key(client, session, "100.64.1.0/24")
    assert (await _enroll(client, other_org_key, "elsewhere", _key(1))).status_code == 201


async def test_a_device_cannot_take_another_devices_key(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    setup_key = await _org_key(client, session, "100.64.0.0/24")
    first = await _enroll(client, setup_key, "first", _key(1))
    second = await _enroll(client, setup_key, "second", _key(2))
    credential = second.json()["credential"]

    response = await client.put(
        "/api/v1/agent/public-key", json={"public_key": _key(1)}, headers=auth(credential)
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "public_key_taken"

    devices = await client.put(
        "/api/v1/agent/public-key", json={"public_key": _key(2)}, headers=auth(credential)
    )
    assert devices.status_code == 200  # its own key again: no change, no conflict
    rotated = await client.put(
        "/api/v1/agent/public-key", json={"public_key": _key(3)}, headers=auth(credential)
    )
    assert rotated.status_code == 200
    assert rotated.json()["public_key"] == _key(3)
    assert first.json()["device"]["public_key"] == _key(1)


async def test_the_database_enforces_it_and_devices_without_a_key_do_not_count(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    setup_key = await _org_key(client, session, "100.64.0.0/24")
    for hostname in ("a", "b"):
        response = await client.post(
            "/api/v1/enroll", json={"setup_key": setup_key, "hostname": hostname}
        )
        assert response.status_code == 201  # two devices without a key
    async with sessionmaker() as writer:
        a, b = (
            await writer.execute(select(VirtualIPMapping).order_by(VirtualIPMapping.id))
        ).scalars()
        a.public_key = _key(7)
        await writer.flush()
        b.public_key = _key(7)
        with pytest.raises(IntegrityError):
            await writer.flush()
