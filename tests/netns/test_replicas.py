"""Real WireGuard across two server replicas on one PostgreSQL database.

Two ``wiremesh server`` processes (``replica0`` and ``replica1``, the end-to-end tests'
harness) listen on the lab's bridge. Four machines run ``agent up`` with wireguard-go; m1
and m3 are enrolled with replica0's URL, m2 and m4 with replica1's, so every agent has peers
whose sessions are on the other replica. In steps, each checked from outside (ping,
``wg show`` on each machine, the agents' exit and logs):

1. every pair pings over the overlay;
2. m1, connected to replica0, is revoked through replica1's API: within
   ``REMOVAL_SECONDS`` it is gone from every other machine's WireGuard peers, neither side
   reaches the other any more, and its agent exits as refused;
3. m4 is stopped and, offline, revoked with the CLI: within ``REMOVAL_SECONDS`` it is gone
   from the remaining machines' peers, which still reach each other.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time

import pytest

from tests.netns.lab import Lab
from tests.netns.mesh import Agent, configured, dropped, exits_revoked, mesh_pings, ping
from tests.support.deployment import Deployment, StartDeployment
from tests.support.processes import CONNECT_SECONDS, ServerProcess
from tests.support.waiting import eventually
from wiremesh.server.presence.models import ConnectionState

pytestmark = [pytest.mark.netns, pytest.mark.parametrize("backend", ["postgresql"])]

REMOVAL_SECONDS = 2.0
"""A revoked device leaves every peer's ``wg show`` this fast, wherever it was revoked
(counted from the API's answer or the CLI's exit)."""
EXIT_SECONDS = 5.0
"""A refused agent closes its interface and exits within this."""


async def _spread(cluster: Deployment, lab: Lab) -> dict[Agent, ServerProcess]:
    """m1..m4 on machines 1..4, enrolled alternately with each replica's URL, started; each
    agent with the replica it enrolled with (its only server)."""
    homes: dict[Agent, ServerProcess] = {}
    for number in (1, 2, 3, 4):
        name = f"m{number}"
        home = cluster.replicas[(number - 1) % len(cluster.replicas)]
        await cluster.enroll_direct(name, via=home)
        machine = lab.machine(number)
        homes[Agent(lab, cluster.group, name, machine, cluster.state_dir(name))] = home
    for agent in homes:
        agent.start()
    return homes


async def _sessions_on(cluster: Deployment, homes: dict[Agent, ServerProcess]) -> None:
    """Wait until each agent's session is on its own replica, as ``connection_status`` says."""
    ids = {replica.name: await cluster.server_id(replica) for replica in cluster.replicas}
    wanted = {agent.enrollment.device.peer_id: ids[home.name] for agent, home in homes.items()}

    async def probe() -> bool:
        rows = await cluster.rows()
        held = {
            row.peer_id: row.server_id for row in rows if row.status == ConnectionState.CONNECTED
        }
        return held == wanted

    await eventually(probe, CONNECT_SECONDS, "every agent connected to its own replica")


async def _offline_everywhere(cluster: Deployment, agent: Agent) -> None:
    async def probe() -> bool:
        flags = [await cluster.online_flags(replica) for replica in cluster.replicas]
        return all(flag[agent.name] is False for flag in flags)

    await eventually(probe, 5, f"every replica lists {agent.name} offline")


async def _unreachable(gone: Agent, others: list[Agent]) -> list[str]:
    """Who still answers one ping in either direction between ``gone`` and ``others``."""
    pairs = [(gone, other) for other in others] + [(other, gone) for other in others]
    answered = await asyncio.gather(
        *(ping(source.machine, target.virtual_ip, wait=0.5) for source, target in pairs)
    )
    return [f"{s.name}->{t.name}" for (s, t), ok in zip(pairs, answered, strict=True) if ok]


async def test_revocations_through_either_replica_or_the_cli_reach_real_wireguard_peers(
    lab: Lab, start_deployment: StartDeployment
) -> None:
    started = time.monotonic()
    cluster = await start_deployment(2, host=lab.host_address)
    for replica in cluster.replicas:
        lab.record(replica.process.pid)
    replica0, replica1 = cluster.replicas
    homes = await _spread(cluster, lab)
    agents = list(homes)
    m1, m2, m3, m4 = agents
    await _sessions_on(cluster, homes)

    # -- 1. Every pair reaches the other by virtual IP, across replicas too.
    await asyncio.gather(
        *(configured(agent, [o for o in agents if o is not agent], 5) for agent in agents)
    )
    # Two agents that connect at the same moment each add the other before its endpoint is
    # known; wireguard-go then starts no new handshake with it for 5 s (its rekey timeout),
    # so a pair may need that long for its first reply.
    times = await mesh_pings(list(itertools.permutations(agents, 2)), seconds=10)
    print(f"first replies across two replicas (s after the pings began): {times}")

    # -- 2. m1's session is on replica0; it is revoked through replica1.
    revoked = await cluster.api(
        "POST", f"/orgs/{cluster.org_id}/devices/{m1.enrollment.device.id}/revoke", via=replica1
    )
    assert revoked.status_code == 200, revoked.text
    api_seconds = await dropped(m1, [m2, m3, m4], REMOVAL_SECONDS)
    await exits_revoked(m1, EXIT_SECONDS)
    session = (await cluster.rows(m1.enrollment.device.peer_id))[-1]
    ended = await cluster.ended(session.id, REMOVAL_SECONDS)  # by the replica that held it
    assert (ended.end_reason, ended.server_id) == ("revoked", await cluster.server_id(replica0))
    assert await _unreachable(m1, [m2, m3, m4]) == []

    # -- 3. m4 (replica1) stopped, then revoked by the CLI while offline.
    m4.process.send(signal.SIGTERM)
    assert await m4.process.exit_code(EXIT_SECONDS) == 0
    await _offline_everywhere(cluster, m4)
    await cluster.cli("device", "revoke", m4.name, "--org", str(cluster.org_id))
    cli_seconds = await dropped(m4, [m2, m3], REMOVAL_SECONDS)

    # The two left still reach each other, their agents still running.
    await mesh_pings([(m2, m3), (m3, m2)], seconds=5)
    assert m2.process.running()
    assert m3.process.running()
    for agent in agents:
        assert agent.enrollment.credential not in agent.log()
    print(
        f"revoked through the other replica: gone from the peers after {api_seconds:.2f} s; "
        f"by the CLI while offline: after {cli_seconds:.2f} s; "
        f"scenario took {time.monotonic() - started:.1f} s"
    )
