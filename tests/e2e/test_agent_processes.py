"""The agent and the server as real processes: the seed's connection lifecycle end to end.

Every agent runs ``agent up --backend memory`` in its own process: one through the
``wiremesh`` command, the others through ``python -m wiremesh.agent`` (the same commands
without the server's import time); the server is ``wiremesh server`` on a free port with a short
heartbeat (interval 0.5 s, timeout 2 s, flush 0.2 s). What happened is read from
``connection_status`` in the database.
"""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from tests.factories import auth
from tests.support.deployment import Deployment
from tests.support.processes import HEARTBEAT_TIMEOUT, REPLICA_LEASE_TTL, AgentProcess
from tests.support.waiting import eventually
from wiremesh import __version__
from wiremesh.agent.state import Enrollment, load_private_key

SEED_COLUMNS = (
    "user_id",
    "org_id",
    "virtual_ip",
    "peer_id",
    "connection_id",
    "public_ip",
    "public_port",
    "status",
    "connected_at",
    "last_ping_at",
    "last_pong_at",
    "last_seen_at",
)
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


def _lines_with(log: str, *needles: str) -> list[str]:
    return [line for line in log.splitlines() if all(needle in line for needle in needles)]


def _assert_no_secrets(agent: AgentProcess, enrollment: Enrollment) -> None:
    log = agent.log()
    assert enrollment.credential not in log
    assert load_private_key(agent.state_dir, enrollment) not in log


async def test_agents_connect_heartbeat_share_peers_and_disconnect_on_sigterm(
    deployment: Deployment,
) -> None:
    # alpha through the `wiremesh` command, beta through `python -m wiremesh.agent`.
    alpha, beta = await asyncio.gather(
        deployment.enroll_cli("alpha", full_cli=True), deployment.enroll_cli("beta")
    )
    agent_a = deployment.agent("alpha", full_cli=True)
    agent_b = deployment.agent("beta")
    agent_a.start()
    agent_b.start()

    rows = {row.peer_id: row for row in await deployment.heartbeating(2)}
    for enrollment, agent in ((alpha, agent_a), (beta, agent_b)):
        row = rows[enrollment.device.peer_id]
        for column in SEED_COLUMNS:
            assert getattr(row, column) is not None, column
        assert row.status == "connected"
        assert row.user_id == enrollment.device.user_id
        assert row.org_id == deployment.org_id
        assert row.virtual_ip == enrollment.device.virtual_ip
        # the port the device drew at enrollment (no --listen-port given)
        assert enrollment.listen_port is not None
        assert (row.public_ip, row.public_port) == ("127.0.0.1", enrollment.listen_port)
        assert row.agent_version == __version__
        assert row.disconnected_at is None
        assert row.last_ping_at is not None
        assert row.connected_at <= row.last_ping_at
        assert row.last_seen_at == row.last_pong_at
        assert f"connection {row.connection_id}" in agent.log()
        assert f"virtual IP {enrollment.device.virtual_ip}" in agent.log()

    # Each agent configured the other with its virtual IP and its endpoint.
    for agent, other in ((agent_a, beta), (agent_b, alpha)):
        key = other.device.public_key
        assert key is not None
        endpoint = f"endpoint=127.0.0.1:{other.listen_port}"

        async def configured(
            agent: AgentProcess = agent, key: str = key, endpoint: str = endpoint
        ) -> bool:
            return bool(_lines_with(agent.log(), key, endpoint))

        await eventually(configured, 20, f"{agent.name} configures {key}")
        assert _lines_with(agent.log(), "add peer", key, f"{other.device.virtual_ip}/32")

    changes_before = len(_lines_with(agent_a.log(), "peers changed"))
    agent_b.process.send(signal.SIGTERM)
    assert await agent_b.process.exit_code(10) == 0
    row_b = await deployment.ended(rows[beta.device.peer_id].id, 20)
    assert row_b.status == "disconnected"
    assert row_b.close_code == 1000
    assert row_b.disconnected_at is not None
    assert row_b.last_seen_at is not None
    assert row_b.disconnected_at >= row_b.last_seen_at
    assert "interface down" in agent_b.log()

    # alpha hears that beta went offline and keeps it configured.
    async def offline() -> bool:
        changes = _lines_with(agent_a.log(), "peers changed")[changes_before:]
        return any("(0 online)" in line for line in changes)

    await eventually(offline, 20, "alpha learns beta is offline")
    # never left removed (path selection may re-add it to knock at another address)
    beta_key = beta.device.public_key
    assert beta_key is not None
    removes = _lines_with(agent_a.log(), "remove peer", beta_key)
    assert len(_lines_with(agent_a.log(), "add peer", beta_key)) == len(removes) + 1
    assert (await deployment.rows(alpha.device.peer_id))[0].status == "connected"

    agent_a.process.send(signal.SIGINT)
    assert await agent_a.process.exit_code(10) == 0
    row_a = await deployment.ended(rows[alpha.device.peer_id].id, 20)
    assert (row_a.status, row_a.close_code) == ("disconnected", 1000)
    _assert_no_secrets(agent_a, alpha)
    _assert_no_secrets(agent_b, beta)


@sqlite_only
async def test_silent_agent_times_out_comes_back_after_sigcont_and_leaves_when_revoked(
    deployment: Deployment,
) -> None:
    alpha = await deployment.enroll_direct("alpha")
    agent = deployment.agent("alpha")
    agent.start()
    (first,) = await deployment.heartbeating(1)

    agent.process.send(signal.SIGSTOP)  # the socket stays open, the agent is silent
    ended = await deployment.ended(first.id, HEARTBEAT_TIMEOUT + 3)
    assert (ended.status, ended.end_reason, ended.close_code) == (
        "timeout",
        "heartbeat_timeout",
        4006,
    )
    assert ended.last_pong_at is not None
    assert ended.disconnected_at is not None
    silence = (ended.disconnected_at - ended.last_pong_at).total_seconds()
    assert HEARTBEAT_TIMEOUT - 0.1 <= silence <= HEARTBEAT_TIMEOUT + 1

    agent.process.send(signal.SIGCONT)
    (second,) = await deployment.heartbeating(1, exclude={first.id})
    assert second.peer_id == alpha.device.peer_id
    assert second.connection_id != first.connection_id
    assert [row.status for row in await deployment.rows()] == ["timeout", "connected"]
    assert "reconnecting in" in agent.log()

    # Revoked: the session closes, the agent exits non-zero and never comes back.
    reconnects = len(_lines_with(agent.log(), "reconnecting in"))
    async with httpx.AsyncClient(base_url=deployment.server.url) as client:
        response = await client.post(
            f"/api/v1/orgs/{deployment.org_id}/devices/{alpha.device.id}/revoke",
            headers=auth(deployment.admin_token),
        )
    assert response.status_code == 200, response.text
    assert await agent.process.exit_code(10) == 3
    assert "device revoked (4004)" in agent.log()
    assert len(_lines_with(agent.log(), "reconnecting in")) == reconnects
    revoked = await deployment.ended(second.id, 5)
    assert (revoked.status, revoked.close_code) == ("disconnected", 4004)
    assert len(await deployment.rows(alpha.device.peer_id)) == 2


async def test_killed_server_leaves_no_connected_row_and_agents_come_back(
    deployment: Deployment,
) -> None:
    enrollments = await asyncio.gather(
        deployment.enroll_direct("alpha"), deployment.enroll_direct("beta")
    )
    agents = [deployment.agent("alpha"), deployment.agent("beta")]
    for agent in agents:
        agent.start()
    await deployment.heartbeating(2)

    deployment.server.kill()
    stale = await deployment.rows()
    assert [row.status for row in stale] == ["connected", "connected"]

    await deployment.server.start()
    fresh = await deployment.heartbeating(2, exclude={row.id for row in stale})
    assert {row.peer_id for row in fresh} == {e.device.peer_id for e in enrollments}

    # SQLite: ended at start-up. PostgreSQL (replicas may share it): once the dead
    # replica's lease has run out.
    for before in stale:
        await deployment.ended(before.id, REPLICA_LEASE_TTL + 5)
    rows = {row.id: row for row in await deployment.rows()}
    for before in stale:
        after = rows[before.id]
        assert after.status == "disconnected"
        assert after.disconnected_at == before.last_seen_at == after.last_seen_at
    connected = [row.id for row in rows.values() if row.status == "connected"]
    assert sorted(connected) == sorted(row.id for row in fresh)
    for agent in agents:
        assert agent.process.running()
        assert "reconnecting in" in agent.log()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_an_agent_moves_to_the_next_replica_when_its_server_stops_or_dies(
    deployment: Deployment,
) -> None:
    server_a = deployment.server
    server_b = await deployment.start_replica("replica-b")
    alpha = await deployment.enroll_cli("alpha", servers=[server_a, server_b])
    assert alpha.server_urls == (server_a.url, server_b.url)
    agent = deployment.agent("alpha")
    agent.start()
    (on_a,) = await deployment.heartbeating(1)
    assert on_a.server_id != "replica-b"
    assert _lines_with(agent.log(), "connected:", f"server {server_a.url}")

    # A stops (SIGTERM: it closes the session, going away): B at once.
    await server_a.stop()
    (on_b,) = await deployment.heartbeating(1, exclude={on_a.id})
    assert on_b.server_id == "replica-b"
    assert on_b.peer_id == alpha.device.peer_id
    assert _lines_with(agent.log(), "trying the next server", server_b.url)

    # A is back; B dies (SIGKILL: the connection is lost): after the last comes the first.
    await server_a.start()
    server_b.kill()
    (on_a_again,) = await deployment.heartbeating(1, exclude={on_a.id, on_b.id})
    assert on_a_again.server_id not in (None, "replica-b")
    assert _lines_with(agent.log(), "trying the next server", server_a.url)
    assert "reconnecting in" not in agent.log()  # one server failed at a time: no backoff

    ended = await deployment.ended(on_a.id, 5)
    assert (ended.status, ended.close_code) == ("disconnected", 1001)
    assert agent.process.running()
    _assert_no_secrets(agent, alpha)
