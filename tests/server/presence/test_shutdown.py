"""A server that stops records every session's end; an end that fails to write is retried."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.devices.agents import connect_agent
from tests.server.presence.conftest import connection_rows, silent_close_code
from tests.support.live import LiveServer, OrgFixture, create_setup_key, enroll
from wiremesh.protocol import CloseCode
from wiremesh.server.presence import repository


async def test_stopping_ends_every_session_in_one_go(
    live_server: LiveServer, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        key = await create_setup_key(client, org)
        devices = [await enroll(client, key, f"host{i}") for i in range(3)]
    sockets = [await connect_agent(live_server.ws_url, d["credential"]) for d in devices]
    await live_server.app.state.wiremesh.hub.stop()
    rows = await connection_rows(sessionmaker)
    assert [(r.status, r.end_reason, r.close_code) for r in rows] == [
        ("disconnected", "server_shutdown", CloseCode.GOING_AWAY)
    ] * 3
    assert all(r.disconnected_at is not None for r in rows)
    assert [await silent_close_code(ws) for ws in sockets] == [CloseCode.GOING_AWAY] * 3


async def test_an_end_that_fails_to_write_is_written_later(
    live_server: LiveServer,
    org: OrgFixture,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        device = await enroll(client, await create_setup_key(client, org), "flaky-db")
    ws = await connect_agent(live_server.ws_url, device["credential"])
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
        rows = await connection_rows(sessionmaker)
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

    hub.history.on_transition = broken_hook
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        device = await enroll(client, await create_setup_key(client, org), "hooked")
    ws = await connect_agent(live_server.ws_url, device["credential"])
    await ws.close()
    for _ in range(100):
        rows = await connection_rows(sessionmaker)
        if rows and rows[0].status != "connected":
            break
        await asyncio.sleep(0.05)
    assert calls == ["connected", "client_closed"]
    assert [(r.status, r.end_reason) for r in rows] == [("disconnected", "client_closed")]
