"""Agents' paths reports over a real WebSocket, stored per peer and shown by the device API."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect

from tests.factories import auth, make_member, make_org, make_token, make_user
from tests.server.presence.conftest import connection_rows, silent_close_code
from tests.support.live import LiveServer, OrgFixture, create_setup_key, enroll
from wiremesh.protocol import CloseCode
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.paths.models import PeerPath

HANDSHAKE = 1_760_000_000.0


async def _connect(server: LiveServer, credential: str, version: int = 3) -> ClientConnection:
    ws = await connect(server.ws_url)
    await ws.send(
        json.dumps(
            {
                "type": "auth",
                "version": version,
                "credential": credential,
                "listen_port": 51820,
                "agent_version": "test",
            }
        )
    )
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    assert welcome["version"] == version
    return ws


def _paths(rows: list[dict[str, Any]], *, full: bool) -> str:
    return json.dumps({"type": "paths", "full": full, "paths": rows})


def _row(peer_id: str, path: str = "direct", endpoint: str | None = "198.51.100.7:51820") -> Any:
    return {"peer_id": peer_id, "path": path, "endpoint": endpoint, "last_handshake": HANDSHAKE}


async def _stored(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessionmaker() as session:
        rows = (await session.execute(select(PeerPath))).scalars()
        return {row.peer_id: row.path for row in rows}


async def _wait_for_rows(
    sessionmaker: async_sessionmaker[AsyncSession], expected: dict[str, str]
) -> None:
    deadline = time.monotonic() + 5
    while (found := await _stored(sessionmaker)) != expected:
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


@pytest.fixture
async def devices(live_server: LiveServer, org: OrgFixture) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        key = await create_setup_key(client, org)
        return {name: await enroll(client, key, name) for name in ("laptop", "alpha", "beta")}


@pytest.fixture
async def foreign_peer_id(
    live_server: LiveServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> str:
    """A device of another organization (same kind of peer id, another tenant)."""
    async with sessionmaker() as session:
        other = await make_org(session, name="other", network_cidr="100.64.1.0/24")
        admin = await make_user(session)
        await make_member(session, other, admin, OrgRole.OWNER)
        token = await make_token(session, admin)
        await session.commit()
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        key = await create_setup_key(
            client, OrgFixture(org_id=other.id, admin_token=token, network="100.64.1.0/24")
        )
        device = await enroll(client, key, "stranger")
    peer_id: str = device["device"]["peer_id"]
    return peer_id


def _peer(devices: dict[str, dict[str, Any]], name: str) -> str:
    peer_id: str = devices[name]["device"]["peer_id"]
    return peer_id


async def test_a_report_is_stored_and_shown_by_the_device_api(
    live_server: LiveServer,
    org: OrgFixture,
    devices: dict[str, dict[str, Any]],
    foreign_peer_id: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    alpha, beta, laptop = _peer(devices, "alpha"), _peer(devices, "beta"), _peer(devices, "laptop")
    ws = await _connect(live_server, devices["laptop"]["credential"])
    await ws.send(
        _paths(
            [
                _row(alpha),
                _row(beta, "relay", "198.18.0.30:3478"),
                _row(foreign_peer_id),  # another org's device: dropped
                _row("peer-nobody"),  # no such device: dropped
                _row(laptop),  # itself: dropped
            ],
            full=True,
        )
    )
    await _wait_for_rows(sessionmaker, {alpha: "direct", beta: "relay"})

    device_id = devices["laptop"]["device"]["id"]
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        response = await client.get(
            f"/api/v1/orgs/{org.org_id}/devices/{device_id}/paths", headers=auth(org.admin_token)
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(p["hostname"], p["path"], p["endpoint"]) for p in body] == [
        ("alpha", "direct", "198.51.100.7:51820"),
        ("beta", "relay", "198.18.0.30:3478"),
    ]
    first = body[0]
    assert first["peer_id"] == alpha
    assert datetime.fromisoformat(first["last_handshake_at"]) == datetime.fromtimestamp(
        HANDSHAKE, UTC
    )
    expected_age = time.time() - HANDSHAKE
    assert abs(first["handshake_age_seconds"] - expected_age) < 60
    assert datetime.fromisoformat(first["reported_at"]) <= datetime.now(UTC)
    await ws.close()


async def test_full_replaces_and_a_delta_changes_only_its_rows(
    live_server: LiveServer,
    devices: dict[str, dict[str, Any]],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    alpha, beta = _peer(devices, "alpha"), _peer(devices, "beta")
    ws = await _connect(live_server, devices["laptop"]["credential"])
    await ws.send(_paths([_row(alpha), _row(beta)], full=True))
    await _wait_for_rows(sessionmaker, {alpha: "direct", beta: "direct"})
    await ws.send(_paths([_row(alpha, "local", "192.168.1.5:51820")], full=True))
    await _wait_for_rows(sessionmaker, {alpha: "local"})
    await ws.send(_paths([_row(beta, "none", None)], full=False))
    await _wait_for_rows(sessionmaker, {alpha: "local", beta: "none"})
    await ws.send(_paths([], full=True))
    await _wait_for_rows(sessionmaker, {})
    await ws.close()


async def test_a_version_2_session_sending_paths_is_closed_as_unknown_type(
    live_server: LiveServer,
    devices: dict[str, dict[str, Any]],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ws = await _connect(live_server, devices["laptop"]["credential"], version=2)
    await ws.send(_paths([_row(_peer(devices, "alpha"))], full=True))
    assert await silent_close_code(ws) == CloseCode.UNKNOWN_TYPE
    assert await _stored(sessionmaker) == {}
    row = (await connection_rows(sessionmaker))[0]
    assert row.end_reason == "protocol_unknown_type"


async def test_reports_faster_than_the_paths_rate_close_the_session(
    live_server: LiveServer,
    devices: dict[str, dict[str, Any]],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ws = await _connect(live_server, devices["laptop"]["credential"])
    frame = _paths([_row(_peer(devices, "alpha"))], full=False)
    for _ in range(17):  # one over the burst, at once
        await ws.send(frame)
    assert await silent_close_code(ws) == CloseCode.RATE_LIMITED
    row = (await connection_rows(sessionmaker))[0]
    assert row.end_reason == "protocol_rate_limited"


async def test_revoking_or_deleting_a_device_forgets_its_paths_both_ways(
    live_server: LiveServer,
    org: OrgFixture,
    devices: dict[str, dict[str, Any]],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    alpha, beta = _peer(devices, "alpha"), _peer(devices, "beta")
    laptop_ws = await _connect(live_server, devices["laptop"]["credential"])
    await laptop_ws.send(_paths([_row(alpha), _row(beta)], full=True))
    alpha_ws = await _connect(live_server, devices["alpha"]["credential"])
    await alpha_ws.send(_paths([_row(beta, "relay")], full=True))

    async def by_device() -> set[tuple[int, str]]:
        async with sessionmaker() as session:
            rows = (await session.execute(select(PeerPath))).scalars()
            return {(row.device_id, row.peer_id) for row in rows}

    laptop_id, alpha_id = devices["laptop"]["device"]["id"], devices["alpha"]["device"]["id"]
    deadline = time.monotonic() + 5
    while await by_device() != {(laptop_id, alpha), (laptop_id, beta), (alpha_id, beta)}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    base = f"/api/v1/orgs/{org.org_id}/devices"
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        revoked = await client.post(f"{base}/{alpha_id}/revoke", headers=auth(org.admin_token))
        assert revoked.status_code == 200, revoked.text
        assert await by_device() == {(laptop_id, beta)}
        deleted = await client.delete(f"{base}/{laptop_id}", headers=auth(org.admin_token))
        assert deleted.status_code == 204, deleted.text
    assert await by_device() == set()
    for ws in (laptop_ws, alpha_ws):
        await ws.close()


async def test_another_tenant_cannot_read_the_paths(
    live_server: LiveServer,
    org: OrgFixture,
    devices: dict[str, dict[str, Any]],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        other = await make_org(session, name="nosy", network_cidr="100.64.2.0/24")
        nosy = await make_user(session)
        await make_member(session, other, nosy, OrgRole.OWNER)
        token = await make_token(session, nosy)
        await session.commit()
    device_id = devices["laptop"]["device"]["id"]
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        theirs = await client.get(
            f"/api/v1/orgs/{org.org_id}/devices/{device_id}/paths", headers=auth(token)
        )
        through_own_org = await client.get(
            f"/api/v1/orgs/{other.id}/devices/{device_id}/paths", headers=auth(token)
        )
    assert theirs.status_code == 404
    assert through_own_org.status_code == 404
