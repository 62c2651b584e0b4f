"""The agent's session loop against the real server (in this process, on a real socket)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth
from tests.support.live import LiveServer, OrgFixture, live_setup_key
from tests.support.waiting import eventually
from wiremesh.agent.enroll import enroll
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.memory import MemoryBackend
from wiremesh.agent.runner import AgentRunner, Backoff, Refused
from wiremesh.agent.state import Enrollment, load_private_key
from wiremesh.server.presence.models import ConnectionStatus

HEARTBEAT_TIMEOUT = 2.0  # the settings fixture's


async def enrolled_runner(
    server: LiveServer, org: OrgFixture, state_dir: Path, backend: MemoryBackend
) -> tuple[AgentRunner, Enrollment]:
    enrollment = await enroll(
        state_dir, [server.base_url], await live_setup_key(server, org), "self"
    )
    runner = AgentRunner(
        enrollment,
        load_private_key(state_dir, enrollment),
        backend,
        listen_port=51820,
        backoff=Backoff(base=0.05, cap=0.2),
    )
    return runner, enrollment


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ConnectionStatus]:
    async with sessionmaker() as session:
        result = await session.execute(select(ConnectionStatus).order_by(ConnectionStatus.id))
        return list(result.scalars())


async def test_the_agent_stays_connected_and_follows_every_peer_change(
    live_server: LiveServer,
    org: OrgFixture,
    state_dir: Path,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    backend = MemoryBackend()
    runner, me = await enrolled_runner(live_server, org, state_dir, backend)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.sessions == 1)
    assert backend.device is not None
    assert str(backend.device.address) == f"{me.device.virtual_ip}/24"
    assert backend.state == {}

    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        other_key = generate_keypair().public_key
        response = await client.post(
            "/api/v1/enroll",
            json={
                "setup_key": await live_setup_key(live_server, org),
                "hostname": "other",
                "public_key": other_key,
            },
        )
        assert response.status_code == 201, response.text
        other = response.json()
        await eventually(lambda: other_key in backend.state)
        assert backend.state[other_key].allowed_ips == {f"{other['device']['virtual_ip']}/32"}

        # Past a whole heartbeat timeout: still the first session, answering pings.
        await asyncio.sleep(HEARTBEAT_TIMEOUT + 0.5)
        assert runner.sessions == 1
        (row,) = await rows(sessionmaker)
        assert row.status == "connected"
        assert row.last_pong_at is not None

        rotated = generate_keypair().public_key
        response = await client.put(
            "/api/v1/agent/public-key",
            json={"public_key": rotated},
            headers=auth(other["credential"]),
        )
        assert response.status_code == 200, response.text
        await eventually(lambda: set(backend.state) == {rotated})

        response = await client.post(
            f"/api/v1/orgs/{org.org_id}/devices/{other['device']['id']}/revoke",
            headers=auth(org.admin_token),
        )
        assert response.status_code == 200, response.text
        await eventually(lambda: backend.state == {})

    runner.stop()
    assert await asyncio.wait_for(task, 5) is None
    assert backend.torn_down

    async def ended() -> bool:
        return (await rows(sessionmaker))[0].status != "connected"

    await eventually(ended)
    (row,) = await rows(sessionmaker)
    assert (row.status, row.close_code) == ("disconnected", 1000)


async def test_a_revoked_device_is_refused_and_not_retried(
    live_server: LiveServer,
    org: OrgFixture,
    state_dir: Path,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    backend = MemoryBackend()
    runner, me = await enrolled_runner(live_server, org, state_dir, backend)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.sessions == 1)
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        response = await client.post(
            f"/api/v1/orgs/{org.org_id}/devices/{me.device.id}/revoke",
            headers=auth(org.admin_token),
        )
    assert response.status_code == 200, response.text
    refused = await asyncio.wait_for(task, 5)
    assert refused is not None
    assert refused.code == 4004
    assert backend.torn_down
    assert len(await rows(sessionmaker)) == 1


async def test_an_unknown_credential_is_refused(
    live_server: LiveServer, org: OrgFixture, state_dir: Path
) -> None:
    backend = MemoryBackend()
    runner, me = await enrolled_runner(live_server, org, state_dir, backend)
    runner.enrollment = me.model_copy(update={"credential": me.credential + "x"})
    refused = await asyncio.wait_for(runner.run(), 5)
    assert refused == Refused(4003, "authentication failed")


async def test_a_changed_local_address_reconnects_at_once_without_a_backoff(
    live_server: LiveServer,
    org: OrgFixture,
    state_dir: Path,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The route lookup is replaced (the real one is tested in ``test_underlay`` and, with
    addresses that really move, in the namespace tests): everything else is real."""
    backend = MemoryBackend()
    runner, _ = await enrolled_runner(live_server, org, state_dir, backend)
    runner.backoff = Backoff(base=30, cap=30)  # a reconnect after a backoff would time out
    source = ["127.0.0.1"]
    runner.route_lookup = lambda remote: source[0]
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: runner.sessions == 1)
        await asyncio.sleep(1.0)  # two path ticks: an unchanged address changes nothing
        assert runner.sessions == 1

        source[0] = "127.0.0.2"
        await eventually(lambda: runner.sessions == 2, 5, "a second session")
        assert runner.status.connection == "connected"
        assert runner.servers.current == live_server.base_url

        async def first_ended() -> bool:
            first, *_ = await rows(sessionmaker)
            return first.status != "connected"

        await eventually(first_ended, 10, "the first session's row ended")
        statuses = [row.status for row in await rows(sessionmaker)]
        assert statuses[-1] == "connected"
        assert statuses.count("connected") == 1
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)
