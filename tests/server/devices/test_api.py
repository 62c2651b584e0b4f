"""The devices API over a real server: the online flag, and what peers hear of each change."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_token, make_user
from tests.server.devices.agents import (
    close_code,
    connect_agent,
    removal_of,
    upsert_of,
    wait_for_change,
)
from tests.support.live import LiveServer, OrgFixture, create_setup_key, enroll
from tests.support.waiting import eventually
from wiremesh.protocol import CloseCode
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.orgs.models import Organization, OrgRole
from wiremesh.server.presence.models import ConnectionStatus

Device = dict[str, Any]


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        yield client


@pytest.fixture
async def pair(http: httpx.AsyncClient, org: OrgFixture) -> tuple[Device, Device]:
    key = await create_setup_key(http, org)
    return await enroll(http, key, "alpha"), await enroll(http, key, "beta")


def _key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


def _url(org: OrgFixture, device: Device, suffix: str = "") -> str:
    return f"/api/v1/orgs/{org.org_id}/devices/{device['device']['id']}{suffix}"


async def test_list_and_get_show_who_is_online(
    live_server: LiveServer,
    http: httpx.AsyncClient,
    org: OrgFixture,
    pair: tuple[Device, Device],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        organization = await session.get(Organization, org.org_id)
        assert organization is not None
        user = await make_user(session)
        await make_member(session, organization, user, OrgRole.MEMBER)
        member = auth(await make_token(session, user))
        await session.commit()
    alpha, _beta = pair
    ws = await connect_agent(live_server.ws_url, alpha["credential"])
    listed = await http.get(f"/api/v1/orgs/{org.org_id}/devices", headers=member)
    assert listed.status_code == 200
    assert [(d["hostname"], d["online"]) for d in listed.json()] == [
        ("alpha", True),
        ("beta", False),
    ]
    one = await http.get(_url(org, alpha), headers=member)
    assert one.json()["online"] is True
    assert one.json()["virtual_ip"] == alpha["device"]["virtual_ip"]
    assert "credential" not in one.text
    assert alpha["credential"] not in one.text
    await ws.close()

    async def offline() -> bool:
        return (await http.get(_url(org, alpha), headers=member)).json()["online"] is False

    await eventually(offline)
    missing = await http.get(f"/api/v1/orgs/{org.org_id}/devices/999999", headers=member)
    assert missing.status_code == 404
    # A plain member may look, but not change.
    assert (
        await http.patch(_url(org, alpha), json={"hostname": "x"}, headers=member)
    ).status_code == 403
    assert (await http.post(_url(org, alpha, "/revoke"), headers=member)).status_code == 403
    assert (await http.delete(_url(org, alpha), headers=member)).status_code == 403
    assert (await http.get(_url(org, alpha), headers=member)).json()["hostname"] == "alpha"


async def test_rename_tells_the_other_devices(
    live_server: LiveServer, http: httpx.AsyncClient, org: OrgFixture, pair: tuple[Device, Device]
) -> None:
    alpha, beta = pair
    ws_alpha = await connect_agent(live_server.ws_url, alpha["credential"])
    ws_beta = await connect_agent(live_server.ws_url, beta["credential"], port=51002)
    beta_peer = beta["device"]["peer_id"]
    await wait_for_change(ws_alpha, upsert_of(beta_peer, online=True))
    renamed = await http.patch(
        _url(org, beta), json={"hostname": "gamma"}, headers=auth(org.admin_token)
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["hostname"] == "gamma"
    assert renamed.json()["online"] is True
    change = await wait_for_change(ws_alpha, upsert_of(beta_peer, hostname="gamma"))
    assert change["peer"]["online"] is True
    assert change["peer"]["endpoint"] == "127.0.0.1:51002"
    assert change["peer"]["virtual_ip"] == beta["device"]["virtual_ip"]
    bad = await http.patch(
        _url(org, beta), json={"hostname": "no spaces"}, headers=auth(org.admin_token)
    )
    assert bad.status_code == 422
    await ws_alpha.close()
    await ws_beta.close()


async def test_revoke_closes_the_session_and_removes_the_peer(
    live_server: LiveServer, http: httpx.AsyncClient, org: OrgFixture, pair: tuple[Device, Device]
) -> None:
    alpha, beta = pair
    ws_alpha = await connect_agent(live_server.ws_url, alpha["credential"])
    ws_beta = await connect_agent(live_server.ws_url, beta["credential"])
    beta_peer = beta["device"]["peer_id"]
    await wait_for_change(ws_alpha, upsert_of(beta_peer, online=True))
    revoked = await http.post(_url(org, beta, "/revoke"), headers=auth(org.admin_token))
    assert revoked.status_code == 200
    assert (revoked.json()["revoked"], revoked.json()["online"]) == (True, False)
    assert await close_code(ws_beta) == CloseCode.DEVICE_REVOKED
    await wait_for_change(ws_alpha, removal_of(beta_peer))
    again = await http.post(_url(org, beta, "/revoke"), headers=auth(org.admin_token))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_revoked"
    await ws_alpha.close()


async def test_delete_removes_the_peer_and_frees_the_address(
    live_server: LiveServer,
    http: httpx.AsyncClient,
    org: OrgFixture,
    pair: tuple[Device, Device],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    alpha, beta = pair
    ws_alpha = await connect_agent(live_server.ws_url, alpha["credential"])
    ws_beta = await connect_agent(live_server.ws_url, beta["credential"])
    beta_peer = beta["device"]["peer_id"]
    await wait_for_change(ws_alpha, upsert_of(beta_peer, online=True))
    deleted = await http.delete(_url(org, beta), headers=auth(org.admin_token))
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert await close_code(ws_beta) == CloseCode.DEVICE_REVOKED
    await wait_for_change(ws_alpha, removal_of(beta_peer))
    assert (await http.get(_url(org, beta), headers=auth(org.admin_token))).status_code == 404
    # Its history stays, ended; its address goes to the next device.
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(ConnectionStatus.status, ConnectionStatus.end_reason).where(
                    ConnectionStatus.peer_id == beta_peer
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [("disconnected", "deleted")]
    key = await create_setup_key(http, org)
    newcomer = await enroll(http, key, "delta")
    assert isinstance(newcomer["device"], dict)
    assert newcomer["device"]["virtual_ip"] == beta["device"]["virtual_ip"]
    refused = await http.put(
        "/api/v1/agent/public-key",
        json={"public_key": _key(1)},
        headers=auth(beta["credential"]),
    )
    assert refused.status_code == 401
    await ws_alpha.close()


async def test_key_rotation_tells_the_peers(
    live_server: LiveServer,
    http: httpx.AsyncClient,
    org: OrgFixture,
    pair: tuple[Device, Device],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    alpha, beta = pair
    ws_alpha = await connect_agent(live_server.ws_url, alpha["credential"])
    ws_beta = await connect_agent(live_server.ws_url, beta["credential"])
    beta_peer = beta["device"]["peer_id"]
    await wait_for_change(ws_alpha, upsert_of(beta_peer, online=True))
    new_key = _key(7)
    response = await http.put(
        "/api/v1/agent/public-key", json={"public_key": new_key}, headers=auth(beta["credential"])
    )
    assert response.status_code == 200, response.text
    assert response.json()["public_key"] == new_key
    assert response.json()["id"] == beta["device"]["id"]
    change = await wait_for_change(ws_alpha, upsert_of(beta_peer, public_key=new_key))
    assert change["peer"]["online"] is True
    async with sessionmaker() as session:
        stored = await session.get(VirtualIPMapping, beta["device"]["id"])
        assert stored is not None
        assert stored.public_key == new_key
    await ws_alpha.close()
    await ws_beta.close()


async def test_key_rotation_refusals(
    http: httpx.AsyncClient,
    org: OrgFixture,
    pair: tuple[Device, Device],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    alpha, _beta = pair
    for public_key in [
        "short",
        "A" * 44,  # 44 characters, but not 32 bytes of standard base64 ending in '='
        base64.b64encode(b"\x01" * 31).decode().ljust(44, "="),
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # URL-safe alphabet: '-' and '_'
        "",
        _key(1) + " ",
    ]:
        response = await http.put(
            "/api/v1/agent/public-key",
            json={"public_key": public_key},
            headers=auth(alpha["credential"]),
        )
        assert response.status_code == 422, (public_key, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    async with sessionmaker() as session:
        keys = (await session.execute(select(func.count(VirtualIPMapping.public_key)))).scalar()
    assert keys == 0, "a refused key is never stored"
    body = {"public_key": _key(3)}
    missing = await http.put("/api/v1/agent/public-key", json=body)
    assert missing.status_code == 401
    user_token = await http.put(
        "/api/v1/agent/public-key", json=body, headers=auth(org.admin_token)
    )
    assert user_token.status_code == 401
    assert user_token.json()["error"]["code"] == "invalid_credential"
    wrong = await http.put(
        "/api/v1/agent/public-key",
        json=body,
        headers=auth(alpha["credential"][:-1] + ("A" if alpha["credential"][-1] != "A" else "B")),
    )
    assert wrong.status_code == 401
    revoked = await http.post(_url(org, alpha, "/revoke"), headers=auth(org.admin_token))
    assert revoked.status_code == 200
    refused = await http.put(
        "/api/v1/agent/public-key", json=body, headers=auth(alpha["credential"])
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "device_revoked"
