"""Several server replicas on one PostgreSQL database, with HAProxy in front or not.

Every replica is ``wiremesh server`` as its own process (heartbeat 0.5 s / timeout 2 s, lease
1.5 s, pool of 5) on the same database; HAProxy balances by least connections and checks
``READINESS_PATH``. Agents are raw WebSockets answering pings (``LiveAgent``) when a test
watches what the server sends, real ``agent up`` processes when it watches reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.server.devices.agents import LiveAgent, Message, removal_of, upsert_of, wait_for_change
from tests.support.deployment import Deployment, StartDeployment
from tests.support.processes import (
    HAPROXY_CHECK_INTERVAL_MS,
    HAPROXY_FALL,
    REPLICA_LEASE_TTL,
    AgentProcess,
    ServerProcess,
)
from tests.support.waiting import eventually
from wiremesh.protocol import CloseCode
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])

PROPAGATION_SECONDS = 1.0
"""A change made through one replica, or by the CLI, reaches agents on every replica within
this, counted from the moment the change was committed (the API answered, the CLI exited)."""

HAPROXY_NOTICES_SECONDS = HAPROXY_FALL * HAPROXY_CHECK_INTERVAL_MS / 1000 + 2.0
"""Failed checks that take a replica out of rotation, plus slack for a busy machine."""

PEERS_LINE = re.compile(r"(\d+) peers \((\d+) online\)")


async def within(seconds: float, what: str, *waits: Awaitable[Any]) -> list[Any]:
    """Await every ``waits`` together; all must be done ``seconds`` from now."""
    try:
        async with asyncio.timeout(seconds):
            return list(await asyncio.gather(*waits))
    except TimeoutError:
        raise AssertionError(f"not within {seconds} s: {what}") from None


def peer_in(welcome: Message, enrolled: dict[str, Any]) -> Message:
    """The entry for the device ``enrolled`` in a welcome's peer list."""
    wanted = peer_id(enrolled)
    matches: list[Message] = [peer for peer in welcome["peers"] if peer["peer_id"] == wanted]
    assert matches, f"{wanted} is not in the welcome: {welcome['peers']}"
    return matches[0]


def peer_id(enrolled: dict[str, Any]) -> str:
    value: str = enrolled["device"]["peer_id"]
    return value


async def flags_everywhere(cluster: Deployment, expected: dict[str, bool]) -> None:
    """Every running replica's ``GET .../devices`` says who is online, as ``expected``."""

    async def agree() -> bool:
        flags = [await cluster.online_flags(r) for r in cluster.replicas if r.running()]
        return all(f == expected for f in flags)

    await eventually(agree, PROPAGATION_SECONDS, f"every replica lists {expected}")


async def connected_rows(cluster: Deployment) -> list[ConnectionStatus]:
    return [row for row in await cluster.rows() if row.status == ConnectionState.CONNECTED]


async def three_devices_on_three_replicas(
    cluster: Deployment,
) -> tuple[list[dict[str, Any]], list[LiveAgent]]:
    """alpha on replica 0, beta on 1, gamma on 2, each enrolled through its own replica."""
    names = ("alpha", "beta", "gamma")
    devices = [
        await cluster.enroll_raw(name, via=replica)
        for name, replica in zip(names, cluster.replicas, strict=True)
    ]
    agents = [
        await cluster.connect_live(device, via=replica)
        for device, replica in zip(devices, cluster.replicas, strict=True)
    ]
    return devices, agents


# ---------------------------------------------------------------------- HAProxy (works today)


async def test_haproxy_spreads_agents_checks_replicas_and_forwards_addresses(
    start_deployment: StartDeployment,
) -> None:
    """Least connections, X-Forwarded-For, and a replica killed, restarted and stopped."""
    cluster = await start_deployment(3, proxy=True)
    proxy = cluster.proxy
    assert proxy is not None
    names = ("alpha", "beta", "gamma", "delta")
    devices = {name: await cluster.enroll_raw(name) for name in names}  # through HAProxy
    sources = {name: f"127.0.0.{index + 2}" for index, name in enumerate(names)}
    agents = {
        name: await cluster.connect_live(devices[name], source_address=sources[name])
        for name in ("alpha", "beta", "gamma")
    }
    rows = await connected_rows(cluster)
    by_peer = {row.peer_id: row for row in rows}
    ids = {replica.name: await cluster.server_id(replica) for replica in cluster.replicas}
    # Least connections: three long sessions, one on each replica.
    assert sorted(row.server_id or "" for row in rows) == sorted(ids.values())
    # The replicas believe HAProxy's X-Forwarded-For: each agent's own address, not HAProxy's.
    for name in agents:
        assert by_peer[peer_id(devices[name])].public_ip == sources[name]

    # A dead replica leaves rotation; its agent comes back through the same URL elsewhere.
    alpha_row = by_peer[peer_id(devices["alpha"])]
    victim = await cluster.replica_with_id(alpha_row.server_id or "")
    victim.kill()
    await agents["alpha"].wait_closed(5)
    again = await cluster.connect_live(devices["alpha"], source_address=sources["alpha"])
    assert again.connection_id != agents["alpha"].connection_id
    await proxy.wait_for({victim.name: "DOWN"}, HAPROXY_NOTICES_SECONDS)
    rows = await connected_rows(cluster)
    moved = [row for row in rows if str(row.connection_id) == again.connection_id]
    assert len(moved) == 1
    assert moved[0].server_id != alpha_row.server_id
    assert moved[0].public_ip == sources["alpha"]

    # Restarted on its port, it is back in rotation and, holding no session, gets the next.
    await victim.start()
    await proxy.wait_for({victim.name: "UP"}, HAPROXY_NOTICES_SECONDS)
    await cluster.connect_live(devices["delta"], source_address=sources["delta"])
    delta_rows = [
        row for row in await connected_rows(cluster) if row.peer_id == peer_id(devices["delta"])
    ]
    assert [row.server_id for row in delta_rows] == [await cluster.server_id(victim)]
    assert delta_rows[0].public_ip == sources["delta"]
    health = await cluster.api("GET", "/users/me")  # the REST API through HAProxy too
    assert health.status_code == 200, health.text

    # Stopped (SIGTERM, a rolling upgrade): its sessions end at once as server_shutdown.
    beta_row = by_peer[peer_id(devices["beta"])]
    stopped = await cluster.replica_with_id(beta_row.server_id or "")
    await stopped.stop()
    assert await agents["beta"].wait_closed(5) == CloseCode.GOING_AWAY
    ended = await cluster.ended(beta_row.id, 1)
    assert (ended.status, ended.end_reason) == ("disconnected", "server_shutdown")
    await proxy.wait_for({stopped.name: "DOWN"}, HAPROXY_NOTICES_SECONDS)
    await cluster.connect_live(devices["beta"], source_address=sources["beta"])
    (beta_again,) = [
        row for row in await connected_rows(cluster) if row.peer_id == peer_id(devices["beta"])
    ]
    assert beta_again.server_id != beta_row.server_id


@dataclass
class Failover:
    """Agents through HAProxy before and after the replica of one of them was killed."""

    agents: dict[str, AgentProcess]
    """By peer id."""
    before: dict[str, ConnectionStatus]
    after: dict[str, ConnectionStatus]
    """Each device's heartbeating row, by peer id, before the kill and once all are back."""
    victim: ServerProcess
    victim_id: str

    @property
    def moved(self) -> list[str]:
        """The devices whose session was on the killed replica."""
        return [peer for peer, row in self.before.items() if row.server_id == self.victim_id]


async def fail_over_through_haproxy(cluster: Deployment) -> Failover:
    """Three real agents through HAProxy; SIGKILL the replica the first one is on; wait until
    each device has a heartbeating session again."""
    agents: dict[str, AgentProcess] = {}
    for name in ("alpha", "beta", "gamma"):
        enrollment = await cluster.enroll_direct(name)  # through HAProxy's URL
        agents[enrollment.device.peer_id] = cluster.agent(name)
    for agent in agents.values():
        agent.start()
    before = {row.peer_id: row for row in await cluster.heartbeating(3)}
    assert before.keys() == agents.keys()
    victim_id = next(iter(before.values())).server_id or ""
    victim = await cluster.replica_with_id(victim_id)
    lost = {row.id for row in before.values() if row.server_id == victim_id}
    victim.kill()
    after = {row.peer_id: row for row in await cluster.heartbeating(3, exclude=lost)}
    return Failover(agents, before, after, victim, victim_id)


async def test_agents_reconnect_through_haproxy_when_their_replica_dies(
    start_deployment: StartDeployment,
) -> None:
    cluster = await start_deployment(3, proxy=True)
    failover = await fail_over_through_haproxy(cluster)
    survivors = {await cluster.server_id(r) for r in cluster.replicas if r.running()}
    assert failover.victim_id not in survivors
    assert failover.after.keys() == failover.before.keys()
    assert failover.moved
    for device, row in failover.after.items():
        assert row.server_id in survivors
        if device in failover.moved:
            assert row.id != failover.before[device].id  # a new session on another replica
            assert "reconnecting in" in failover.agents[device].log()
        else:
            assert row.id == failover.before[device].id  # untouched
    # The dead replica's rows end when each agent's new session starts (superseded), at the
    # latest once its lease has run out (server_lost): never two live rows for one device.
    for device in failover.moved:
        ended = await cluster.ended(failover.before[device].id, REPLICA_LEASE_TTL + 3)
        assert ended.status == "disconnected"
        assert ended.end_reason in {"superseded", "server_lost"}
    assert sorted(row.id for row in await connected_rows(cluster)) == sorted(
        row.id for row in failover.after.values()
    )
    for agent in failover.agents.values():
        assert agent.process.running()


async def test_after_a_failover_every_agent_sees_every_peer_online(
    start_deployment: StartDeployment,
) -> None:
    cluster = await start_deployment(3, proxy=True)
    async with cluster.watch_connected_rows():
        failover = await fail_over_through_haproxy(cluster)

        def last_peer_summary(agent: AgentProcess) -> tuple[int, int] | None:
            found = PEERS_LINE.findall(agent.log())
            return (int(found[-1][0]), int(found[-1][1])) if found else None

        async def converged() -> bool:
            return all(last_peer_summary(a) == (2, 2) for a in failover.agents.values())

        await eventually(converged, 3, "every agent lists 2 peers, 2 online")
    everyone = {"alpha": True, "beta": True, "gamma": True}
    await flags_everywhere(cluster, everyone)


# ------------------------------------------------------------ one truth (waits for the core)


async def test_presence_and_endpoints_reach_agents_on_other_replicas(
    start_deployment: StartDeployment,
) -> None:
    cluster = await start_deployment(3)
    r0, r1, r2 = cluster.replicas
    names = ("alpha", "beta", "gamma")
    alpha, beta, gamma = [
        await cluster.enroll_raw(name, via=replica)
        for name, replica in zip(names, cluster.replicas, strict=True)
    ]
    # Online: every replica lists alpha online, so beta's welcome from another has it online.
    agent_a = await cluster.connect_live(alpha, via=r0)
    await flags_everywhere(cluster, {"alpha": True, "beta": False, "gamma": False})
    agent_b = await cluster.connect_live(beta, via=r1, port=51002)
    assert peer_in(agent_b.welcome, alpha)["online"] is True
    await within(
        PROPAGATION_SECONDS,
        "alpha (replica 0) hears beta (replica 1) is online",
        wait_for_change(agent_a, upsert_of(peer_id(beta), online=True, endpoint="127.0.0.1:51002")),
    )
    await flags_everywhere(cluster, {"alpha": True, "beta": True, "gamma": False})
    agent_g = await cluster.connect_live(gamma, via=r2, port=51003)
    assert peer_in(agent_g.welcome, alpha)["online"] is True
    assert peer_in(agent_g.welcome, beta)["online"] is True
    await within(
        PROPAGATION_SECONDS,
        "alpha and beta hear gamma (replica 2) is online",
        wait_for_change(agent_a, upsert_of(peer_id(gamma), online=True)),
        wait_for_change(agent_b, upsert_of(peer_id(gamma), online=True)),
    )
    await flags_everywhere(cluster, {"alpha": True, "beta": True, "gamma": True})

    # Endpoint: beta's WireGuard port changes; agents on the two other replicas hear it.
    await agent_b.send(json.dumps({"type": "endpoint", "listen_port": 51999}))
    moved = upsert_of(peer_id(beta), endpoint="127.0.0.1:51999", online=True)
    await within(
        PROPAGATION_SECONDS,
        "alpha and gamma hear beta's new endpoint",
        wait_for_change(agent_a, moved),
        wait_for_change(agent_g, moved),
    )

    # Offline: gamma leaves replica 2; alpha and beta hear it, every replica lists it offline.
    await agent_g.close()
    gone = upsert_of(peer_id(gamma), online=False)
    await within(
        PROPAGATION_SECONDS,
        "alpha and beta hear gamma went offline",
        wait_for_change(agent_a, gone),
        wait_for_change(agent_b, gone),
    )
    await flags_everywhere(cluster, {"alpha": True, "beta": True, "gamma": False})


async def test_device_changes_reach_agents_on_other_replicas(
    start_deployment: StartDeployment,
) -> None:
    cluster = await start_deployment(3)
    r0, r1, r2 = cluster.replicas
    devices, (agent_a, agent_b, agent_g) = await three_devices_on_three_replicas(cluster)
    _alpha, beta, gamma = devices

    # Key change: beta re-keys through its own replica; alpha and gamma hear it.
    new_key = base64.b64encode(bytes([7]) * 32).decode()
    response = await cluster.api(
        "PUT",
        "/agent/public-key",
        via=r1,
        token=beta["credential"],
        json={"public_key": new_key},
    )
    assert response.status_code == 200, response.text
    rekeyed = upsert_of(peer_id(beta), public_key=new_key)
    await within(
        PROPAGATION_SECONDS,
        "alpha and gamma hear beta's new key",
        wait_for_change(agent_a, rekeyed),
        wait_for_change(agent_g, rekeyed),
    )

    # Enrollment through replica 2: agents on replicas 0 and 1 get the newcomer (offline).
    delta = await cluster.enroll_raw("delta", via=r2)
    joined = upsert_of(peer_id(delta), online=False)
    await within(
        PROPAGATION_SECONDS,
        "alpha and beta hear of delta, enrolled through replica 2",
        wait_for_change(agent_a, joined),
        wait_for_change(agent_b, joined),
    )

    # Revocation through replica 2 of beta, whose session is on replica 1.
    revoked = await cluster.api(
        "POST", f"/orgs/{cluster.org_id}/devices/{beta['device']['id']}/revoke", via=r2
    )
    assert revoked.status_code == 200, revoked.text
    code, *_ = await within(
        PROPAGATION_SECONDS,
        "beta's session closes and alpha and gamma drop it",
        agent_b.wait_closed(PROPAGATION_SECONDS),
        wait_for_change(agent_a, removal_of(peer_id(beta))),
        wait_for_change(agent_g, removal_of(peer_id(beta))),
    )
    assert code == CloseCode.DEVICE_REVOKED

    # Deletion through replica 0 of gamma, whose session is on replica 2.
    deleted = await cluster.api(
        "DELETE", f"/orgs/{cluster.org_id}/devices/{gamma['device']['id']}", via=r0
    )
    assert deleted.status_code == 204, deleted.text
    code, *_ = await within(
        PROPAGATION_SECONDS,
        "gamma's session closes and alpha drops it",
        agent_g.wait_closed(PROPAGATION_SECONDS),
        wait_for_change(agent_a, removal_of(peer_id(gamma))),
    )
    assert code == CloseCode.DEVICE_REVOKED
    await flags_everywhere(cluster, {"alpha": True, "beta": False, "delta": False})


async def test_cli_revocation_reaches_agents_on_every_replica(
    start_deployment: StartDeployment,
) -> None:
    cluster = await start_deployment(3)
    (_alpha, _beta, gamma), agents = await three_devices_on_three_replicas(cluster)
    delta = await cluster.enroll_raw("delta")  # enrolled, never connected

    # An offline device revoked by the CLI (no replica involved) leaves every peer list.
    await cluster.cli("device", "revoke", "delta", "--org", str(cluster.org_id))
    await within(
        PROPAGATION_SECONDS,
        "every agent drops delta, revoked by the CLI",
        *(wait_for_change(agent, removal_of(peer_id(delta))) for agent in agents),
    )

    # An online one: its session closes wherever it is, and the others drop it.
    agent_a, agent_b, agent_g = agents
    await cluster.cli("device", "revoke", "gamma", "--org", str(cluster.org_id))
    code, *_ = await within(
        PROPAGATION_SECONDS,
        "gamma's session closes and alpha and beta drop it",
        agent_g.wait_closed(PROPAGATION_SECONDS),
        wait_for_change(agent_a, removal_of(peer_id(gamma))),
        wait_for_change(agent_b, removal_of(peer_id(gamma))),
    )
    assert code == CloseCode.DEVICE_REVOKED


PAUSED_HEARTBEAT_TIMEOUT = 10.0
"""Longer than the pause: the agents keep answering, so it is the replica, not its agents,
that went silent, and its sessions outlive the pause unless the core closes them."""


async def test_a_replica_paused_past_its_lease_leaves_no_session_without_a_row(
    start_deployment: StartDeployment,
) -> None:
    cluster = await start_deployment(
        2, env={"WIREMESH_HEARTBEAT_TIMEOUT": str(PAUSED_HEARTBEAT_TIMEOUT)}
    )
    paused, steady = cluster.replicas
    devices = [await cluster.enroll_raw(name) for name in ("alpha", "beta", "gamma")]
    on_paused = {
        peer_id(device): await cluster.connect_live(device, via=paused) for device in devices[:2]
    }
    steady_agent = await cluster.connect_live(devices[2], via=steady)
    paused_id = await cluster.server_id(paused)
    rows = await connected_rows(cluster)
    assert len(rows) == 3

    async with cluster.watch_connected_rows():
        paused.pause()
        stopped_at = time.monotonic()

        async def lease_ran_out() -> bool:
            mine = [row for row in await cluster.rows() if row.server_id == paused_id]
            return all(row.status != ConnectionState.CONNECTED for row in mine)

        await eventually(lease_ran_out, 3 * REPLICA_LEASE_TTL + 2, "the paused replica's rows end")
        for row in await cluster.rows():
            if row.server_id == paused_id:
                assert row.end_reason == "server_lost"
        await asyncio.sleep(max(0.0, stopped_at + 3 * REPLICA_LEASE_TTL - time.monotonic()))
        pings_before = {peer: agent.pings_answered for peer, agent in on_paused.items()}
        paused.resume()

        async def every_live_session_has_a_row() -> bool:
            """A session still open on the paused replica, pinged since it resumed, has a
            connected row there; one the replica closed comes back, as an agent would."""
            connected = {
                row.peer_id for row in await connected_rows(cluster) if row.server_id == paused_id
            }
            settled = True
            for device in devices[:2]:
                peer = peer_id(device)
                agent = on_paused[peer]
                if agent.closed is not None:
                    on_paused[peer] = await cluster.connect_live(device, via=paused)
                    pings_before[peer] = 0
                    settled = False
                elif agent.pings_answered <= pings_before[peer] or peer not in connected:
                    settled = False
            return settled

        await eventually(
            every_live_session_has_a_row, 2 * REPLICA_LEASE_TTL + 1, "sessions and rows agree"
        )
        # ...and it stays so for a lease: nothing ends those rows while the sessions live on.
        deadline = time.monotonic() + REPLICA_LEASE_TTL
        while time.monotonic() < deadline:
            assert await every_live_session_has_a_row(), "a live session lost its row"
            await asyncio.sleep(0.1)
    assert steady_agent.closed is None
    assert peer_id(devices[2]) in {row.peer_id for row in await connected_rows(cluster)}


RESTART_LEASE_TTL = 10.0
"""Far longer than a restart: only the stable server id can end the killed process's rows
before its agents are back, so a second ``connected`` row would show at once without it."""


async def test_a_restart_with_the_default_server_id_never_doubles_a_connected_row(
    start_deployment: StartDeployment,
) -> None:
    cluster = await start_deployment(1, env={"WIREMESH_REPLICA_LEASE_TTL": str(RESTART_LEASE_TTL)})
    server = cluster.server
    for name in ("alpha", "beta"):
        await cluster.enroll_direct(name)
        cluster.agent(name).start()
    stale = await cluster.heartbeating(2)
    first_id = await cluster.server_id(server)
    async with cluster.watch_connected_rows():
        server.kill()
        await server.start()
        fresh = await cluster.heartbeating(2, exclude={row.id for row in stale})
    assert await cluster.server_id(server) == first_id
    assert first_id.endswith(f":{server.port}"), first_id
    assert {row.server_id for row in fresh} == {first_id}
    stale_ids = {row.id for row in stale}
    for row in await cluster.rows():
        if row.id in stale_ids:  # ended at start-up, before the agents were back
            assert (row.status, row.end_reason) == ("disconnected", "server_lost")


async def allow_connections(database_url: str, allowed: bool) -> None:
    """Let clients connect to the test database or not, and when not, end every session it
    has: from the replicas' side the database has stopped answering."""
    url = make_url(database_url)
    engine = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text(f'ALTER DATABASE "{url.database}" WITH ALLOW_CONNECTIONS {allowed}')
            )
            if not allowed:
                await connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name"
                    ),
                    {"name": url.database},
                )
    finally:
        await engine.dispose()


async def test_haproxy_takes_a_replica_without_its_database_out_of_rotation(
    start_deployment: StartDeployment, database_url: str
) -> None:
    cluster = await start_deployment(1, proxy=True)
    proxy, replica = cluster.proxy, cluster.server
    assert proxy is not None

    async def status(path: str) -> tuple[int, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{replica.url}{path}")
        return response.status_code, response.json()

    assert await status("/readyz") == (200, {"status": "ready"})
    await allow_connections(database_url, False)
    try:

        async def not_ready() -> bool:
            return (await status("/readyz"))[0] == 503

        await eventually(not_ready, 5, "/readyz answers 503 without the database")
        assert (await status("/healthz"))[0] == 200  # the process still serves
        await proxy.wait_for({replica.name: "DOWN"}, HAPROXY_NOTICES_SECONDS)
    finally:
        await allow_connections(database_url, True)

    async def ready() -> bool:
        return await status("/readyz") == (200, {"status": "ready"})

    await eventually(ready, 5, "/readyz answers 200 with the database back")
    await proxy.wait_for({replica.name: "UP"}, HAPROXY_NOTICES_SECONDS)
