"""The device list's event stream, over a real socket, as a real agent comes and goes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.devices.agents import connect_agent
from tests.server.web.dashboard import sign_in
from tests.server.web.fixtures import Tenant, make_tenant
from tests.support.live import LiveServer

STREAM_SECONDS = 30.0


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> Tenant:
    async with sessionmaker() as session:
        made = await make_tenant(session, "hooli", "100.64.5.0/24")
        await session.commit()
        return made


async def device_states(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The device row's state in each ``devices`` event of the stream."""
    event = ""
    async for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "devices":
            html = json.loads(line.removeprefix("data: "))["html"]
            yield html.split('data-state="', 1)[1].split('"', 1)[0]


async def next_state(states: AsyncIterator[str], wanted: str) -> None:
    async with asyncio.timeout(STREAM_SECONDS):
        async for state in states:
            if state == wanted:
                return
    raise AssertionError(f"the stream ended before the device was {wanted}")


async def test_the_stream_pushes_online_then_offline_without_a_reload(
    live_server: LiveServer, tenant: Tenant
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=STREAM_SECONDS) as client:
        await sign_in(client, tenant.owner.email)
        page = await client.get(f"/orgs/{tenant.org.id}/devices")
        assert 'data-state="offline"' in page.text
        path = page.text.split('data-stream="', 1)[1].split('"', 1)[0]
        assert "?shown=" in path
        async with client.stream("GET", path) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            states = device_states(response.aiter_lines())
            agent = await connect_agent(live_server.ws_url, tenant.credential)
            # The rows the page shows are not sent again: the first event is the change.
            async with asyncio.timeout(STREAM_SECONDS):
                assert await anext(states) == "online"
            await agent.close()
            await next_state(states, "offline")


async def test_a_stream_holds_no_database_connection_while_it_waits(
    live_server: LiveServer, tenant: Tenant
) -> None:
    """Many open dashboards must not starve the pool the agents and the API need."""
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=STREAM_SECONDS) as client:
        await sign_in(client, tenant.owner.email)
        path = f"/orgs/{tenant.org.id}/devices/stream"
        pool = live_server.app.state.wiremesh.engine.pool
        async with client.stream("GET", path) as response:
            states = device_states(response.aiter_lines())
            await next_state(states, "offline")
            await asyncio.sleep(0.2)
            assert pool.checkedout() == 0
