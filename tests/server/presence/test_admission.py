"""Under a storm, agents wait for admission until their auth deadline, then retry later."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.live import LiveServer, OrgFixture, create_setup_key, enroll
from wiremesh.protocol import CloseCode, should_reconnect
from wiremesh.server.presence.models import ConnectionStatus


async def test_an_agent_not_admitted_in_time_is_told_to_retry_and_nothing_is_recorded(
    live_server: LiveServer, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    state = live_server.app.state.wiremesh
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        device = await enroll(client, await create_setup_key(client, org), "queued")
    state.settings.auth_timeout = 0.5
    state.hub.admission = asyncio.Semaphore(0)  # every admission slot is taken
    async with connect(live_server.ws_url) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "auth",
                    "version": 1,
                    "credential": device["credential"],
                    "agent_version": "t",
                }
            )
        )
        try:
            await asyncio.wait_for(ws.recv(), 5)
            code = None
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
    assert code == CloseCode.AUTH_TIMEOUT
    assert should_reconnect(CloseCode.AUTH_TIMEOUT)
    async with sessionmaker() as session:
        rows = await session.scalar(select(func.count()).select_from(ConnectionStatus))
    assert rows == 0
