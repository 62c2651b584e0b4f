"""A server that stops records every session's end; an end that fails to write is retried."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.server.presence.conftest import LiveServer, OrgFixture, create_setup_key, enroll
from wiremesh.protocol import CloseCode
from wiremesh.server.presence import repository
from wiremesh.server.presence.models import ConnectionStatus


async def _agent(server: LiveServer, credential: str) -> ClientConnection:
    ws = await connect(server.ws_url)
    await ws.send(
        json.dumps({"type": "auth", "version": 1, "credential": credential, "agent_version": "t"})
    )
    await ws.recv()
    return ws


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ConnectionStatus]:
    async with sessionmaker() as session:
        result = await session.execute(select(ConnectionStatus).order_by(ConnectionStatus.id))
        return list(result.scalars())


async def _close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def test_stopping_ends_every_session_in_one_go(
    live_server: LiveServer, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        key = await create_setup_key(client, org)
        devices = [await enroll(client, key, f"host{i}") for i in range(3)]
    sockets = [await _agent(live_server, d["credential"]) for d in devices]
    await live_server.app.state.wiremesh.hub.stop()
    rows = await _rows(sessionmaker)
    assert [(r.status, r.end_reason, r.close_code) for r in rows] == [
        ("disconnected", "server_shutdown", CloseCode.GOING_AWAY)
    ] * 3
    assert all(r.disconnected_at is not None for r in rows)
    assert [await _close_code(ws) for ws in sockets] == [CloseCode.GOING_AWAY] * 3


async def test_an_end_that_fails_to_write_is_written_later(
    live_server: LiveServer,
    org: OrgFixture,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        device = await enroll(client, await create_setup_key(client, org), "flaky-db")
    ws = await _agent(live_server, device["credential"])
    real_end = repository.end_connection
    failures = []

    async def failing_once(session: AsyncSession, end: Any) -> bool:
        if not failures:
            failures.append(end)
            raise ConnectionError("database went away")
        return await real_end(session, end)

    monkeypatch.setattr(repository, "end_connection", failing_once)
    await ws.close()
    for _ in range(100):
        rows = await _rows(sessionmaker)
        if rows[0].status != "connected":
            break
        await asyncio.sleep(0.05)
    assert failures, "the first write did not fail as arranged"
    assert rows[0].status == "disconnected"
    assert rows[0].end_reason == "client_closed"


async def test_a_failing_transition_hook_does_not_cost_the_history(
    live_server: LiveServer, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    hub = live_server.app.state.wiremesh.hub
    calls: list[str] = []

    async def broken_hook(*args: Any) -> None:
        calls.append(args[3])
        raise RuntimeError("alert mail template is broken")

    hub.on_transition = broken_hook
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        device = await enroll(client, await create_setup_key(client, org), "hooked")
    ws = await _agent(live_server, device["credential"])
    await ws.close()
    for _ in range(100):
        rows = await _rows(sessionmaker)
        if rows and rows[0].status != "connected":
            break
        await asyncio.sleep(0.05)
    assert calls == ["connected", "client_closed"]
    assert [(r.status, r.end_reason) for r in rows] == [("disconnected", "client_closed")]
