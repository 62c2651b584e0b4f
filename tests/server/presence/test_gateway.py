"""The seed's connection lifecycle over a real WebSocket, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.server.presence.conftest import connection_rows, silent_close_code
from tests.support.live import LiveServer, OrgFixture, create_setup_key, enroll
from wiremesh.protocol import PROTOCOL_VERSION, CloseCode
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.presence.models import ConnectionStatus


async def _connect(server: LiveServer, credential: str, port: int = 51820) -> ClientConnection:
    ws = await connect(server.ws_url)
    await ws.send(
        json.dumps(
            {
                "type": "auth",
                "version": PROTOCOL_VERSION,
                "credential": credential,
                "listen_port": port,
                "agent_version": "test",
            }
        )
    )
    return ws


async def _wait_for(predicate: Any, seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
async def device(live_server: LiveServer, org: OrgFixture) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        key = await create_setup_key(client, org)
        return await enroll(client, key, "laptop")


async def test_connect_records_every_seed_column(
    live_server: LiveServer,
    device: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ws = await _connect(live_server, device["credential"])
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    assert welcome["device"]["virtual_ip"] == device["device"]["virtual_ip"]
    rows = await connection_rows(sessionmaker)
    assert len(rows) == 1
    row = rows[0]
    assert row.status == "connected"
    assert str(row.connection_id) == welcome["connection_id"]
    assert row.virtual_ip == device["device"]["virtual_ip"]
    assert row.peer_id == device["device"]["peer_id"]
    assert row.public_ip == "127.0.0.1"
    assert row.public_port == 51820
    assert row.connected_at is not None
    assert row.disconnected_at is None
    # The heartbeat columns are set at connect: a session that just authenticated has
    # answered, and the seed's "may time out" query must not list it.
    assert row.last_ping_at == row.last_pong_at == row.last_seen_at == row.connected_at
    connected_at = row.connected_at
    ping = json.loads(await asyncio.wait_for(ws.recv(), 2))
    assert ping["type"] == "ping"
    await ws.send(json.dumps({"type": "pong", "seq": ping["seq"]}))

    async def flushed() -> ConnectionStatus | None:
        current = (await connection_rows(sessionmaker))[0]
        pong_at = current.last_pong_at
        return current if pong_at is not None and pong_at > connected_at else None

    row = await _wait_for(flushed)
    assert row.last_ping_at is not None
    assert row.last_seen_at == row.last_pong_at
    async with sessionmaker() as session:
        mapping = await session.get(VirtualIPMapping, device["device"]["id"])
        assert mapping is not None
        assert mapping.last_seen_at is not None
    await ws.close()

    async def ended() -> ConnectionStatus | None:
        current = (await connection_rows(sessionmaker))[0]
        return current if current.status != "connected" else None

    row = await _wait_for(ended)
    assert row.status == "disconnected"
    assert row.disconnected_at is not None
    assert row.end_reason == "client_closed"


async def test_silent_agent_times_out_within_timeout_plus_one_second(
    live_server: LiveServer,
    device: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ws = await _connect(live_server, device["credential"])
    await ws.recv()  # welcome; from now on the agent says nothing
    started = time.monotonic()
    assert await silent_close_code(ws) == CloseCode.HEARTBEAT_TIMEOUT
    elapsed = time.monotonic() - started
    settings = live_server.app.state.wiremesh.settings
    assert elapsed <= settings.heartbeat_timeout + 1.0
    row = (await connection_rows(sessionmaker))[0]
    assert row.status == "timeout"
    assert row.disconnected_at is not None


async def test_second_session_supersedes_the_first(
    live_server: LiveServer,
    device: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = await _connect(live_server, device["credential"])
    await first.recv()
    second = await _connect(live_server, device["credential"])
    await second.recv()
    assert await silent_close_code(first) == CloseCode.SUPERSEDED
    rows = await connection_rows(sessionmaker)
    assert [row.status for row in rows] == ["disconnected", "connected"]
    assert rows[0].end_reason == "superseded"
    await second.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", CloseCode.MALFORMED),
        ('{"type": "launch"}', CloseCode.UNKNOWN_TYPE),
        ('{"type": "pong", "seq": 1}', CloseCode.NOT_AUTHENTICATED),
        (
            '{"type":"auth","version":1,"credential":"wmd_nope_nope","agent_version":"x"}',
            CloseCode.AUTH_FAILED,
        ),
        ("x" * 5000, CloseCode.MESSAGE_TOO_BIG),
    ],
)
async def test_bad_first_frames_are_refused_with_aclose_code(
    live_server: LiveServer,
    sessionmaker: async_sessionmaker[AsyncSession],
    frame: str,
    code: CloseCode,
) -> None:
    async with connect(live_server.ws_url) as ws:
        await ws.send(frame)
        assert await silent_close_code(ws) == code
    assert await connection_rows(sessionmaker) == []


async def test_flood_is_cut_and_the_row_ends(
    live_server: LiveServer,
    device: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ws = await _connect(live_server, device["credential"])
    await ws.recv()
    with contextlib.suppress(ConnectionClosed):
        for _ in range(500):
            await ws.send(json.dumps({"type": "pong", "seq": 999}))
    assert await silent_close_code(ws) == CloseCode.RATE_LIMITED
    row = (await connection_rows(sessionmaker))[0]
    assert row.status == "disconnected"
    assert row.end_reason == "protocol_rate_limited"


async def test_revoked_device_is_closed_and_cannot_come_back(
    live_server: LiveServer,
    org: OrgFixture,
    device: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ws = await _connect(live_server, device["credential"])
    await ws.recv()
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        response = await client.post(
            f"/api/v1/orgs/{org.org_id}/devices/{device['device']['id']}/revoke",
            headers={"Authorization": f"Bearer {org.admin_token}"},
        )
        assert response.status_code == 200, response.text
    assert await silent_close_code(ws) == CloseCode.DEVICE_REVOKED
    again = await _connect(live_server, device["credential"])
    assert await silent_close_code(again) == CloseCode.DEVICE_REVOKED
    rows = await connection_rows(sessionmaker)
    assert [row.status for row in rows] == ["disconnected"]
    assert rows[0].end_reason == "revoked"


async def test_peers_get_a_delta_when_a_device_joins_and_leaves(
    live_server: LiveServer, org: OrgFixture
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        key = await create_setup_key(client, org)
        first = await enroll(client, key, "alpha")
        second = await enroll(client, key, "beta")
    ws_a = await _connect(live_server, first["credential"], port=51001)
    welcome_a = json.loads(await ws_a.recv())
    assert [p["peer_id"] for p in welcome_a["peers"]] == [second["device"]["peer_id"]]
    assert welcome_a["peers"][0]["online"] is False
    ws_b = await _connect(live_server, second["credential"], port=51002)
    welcome_b = json.loads(await ws_b.recv())
    assert welcome_b["peers"][0]["online"] is True
    assert welcome_b["peers"][0]["endpoint"] == "127.0.0.1:51001"

    async def next_delta(ws: ClientConnection) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong", "seq": message["seq"]}))
                continue
            return message

    delta = await next_delta(ws_a)
    assert delta["type"] == "peers_delta"
    assert delta["changes"][0]["peer"]["peer_id"] == second["device"]["peer_id"]
    assert delta["changes"][0]["peer"]["online"] is True
    assert delta["changes"][0]["peer"]["endpoint"] == "127.0.0.1:51002"
    await ws_b.close()
    delta = await next_delta(ws_a)
    assert delta["changes"][0]["peer"]["online"] is False
    await ws_a.close()
