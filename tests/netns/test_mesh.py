"""Enrolled agents reach each other by virtual IP over real WireGuard (wireguard-go).

Four "machines" (network + mount namespaces) hang off a bridge on this host at
198.18.x.11-14; the server runs on the host at 198.18.x.1. Each agent runs
``python -m wiremesh.agent up --backend wireguard-go --interface wm0 --listen-port 51820``
on its machine. One scenario, in steps: a full mesh of three, a fourth joining (timed from
its connection to the first reply from each of the others), a key rotation, an agent
stopped, a device revoked. Everything is checked from outside: ping, ``wg show`` on each
machine, the server's API, the agents' logs.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from datetime import datetime

import pytest

from tests.netns.mesh import (
    PYTHON,
    Agent,
    Mesh,
    configured,
    dropped,
    exits_revoked,
    first_reply,
    mesh_pings,
    ping,
)
from tests.support.waiting import eventually
from wiremesh.agent.state import load_enrollment

pytestmark = pytest.mark.netns

JOIN_BUDGET = 2.0
"""A device that connects is reachable from every other this fast (seconds)."""


async def _online(mesh: Mesh, agents: list[Agent], online: bool) -> None:
    names = {agent.name for agent in agents}

    async def probe() -> bool:
        devices = await mesh.devices()
        return all(devices[name]["online"] is online for name in names)

    await eventually(probe, 20, f"{sorted(names)} online={online} in the API", interval=0.1)


def _peers_changed(agent: Agent) -> list[str]:
    return [line for line in agent.log().splitlines() if "peers changed:" in line]


async def test_a_real_mesh_of_agents_in_network_namespaces(mesh: Mesh) -> None:
    machines = [mesh.lab.machine(number) for number in (1, 2, 3, 4)]
    started = time.monotonic()

    # -- Three agents: every pair reaches the other by virtual IP.
    first = [await mesh.enroll(f"m{n}", machines[n - 1]) for n in (1, 2, 3)]
    a1, a2, a3 = first
    for agent in first:
        agent.start()
    await _online(mesh, first, online=True)
    for agent in first:
        await configured(agent, [other for other in first if other is not agent])
    mesh_times = await mesh_pings(list(itertools.permutations(first, 2)), seconds=15)
    print(f"first replies in the mesh of three (s after the pings began): {mesh_times}")

    # -- A fourth joins: reachable from all three within JOIN_BUDGET of its connection.
    a4 = await mesh.enroll_on_machine("m4", machines[3])
    await asyncio.gather(*(_configured_key(agent, a4) for agent in first))
    probes = [
        asyncio.create_task(first_reply(agent.machine, a4.virtual_ip, 20, wait=0.2))
        for agent in first
    ]
    a4.start()
    replies = await asyncio.gather(*probes)
    connected_at = await _connected_at(mesh, a4)
    unreachable = [a.name for a, r in zip(first, replies, strict=True) if r is None]
    assert not unreachable, f"m4 unreachable from {unreachable}"
    delays = {
        agent.name: round(when - connected_at, 3)
        for agent, when in zip(first, replies, strict=True)
        if when is not None
    }
    print(f"join-to-reachable (s from m4's connected_at to the first reply): {delays}")
    assert max(delays.values()) <= JOIN_BUDGET, delays
    await mesh_pings([(a4, agent) for agent in first], seconds=10)

    # -- Key rotation on a running agent: peers switch to the new key, traffic flows again.
    old_key = a1.public_key
    rotate = await asyncio.create_subprocess_exec(
        *a1.machine.argv(
            PYTHON, "-m", "wiremesh.agent", "rotate-key", "--state-dir", str(a1.state_dir)
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await rotate.communicate()
    assert rotate.returncode == 0, output.decode()
    a1.enrollment = load_enrollment(a1.state_dir)
    assert a1.public_key != old_key

    async def rekeyed() -> bool:
        own = a1.machine.sh("wg", "show", "wm0", "public-key").stdout.strip()
        others = [await asyncio.to_thread(other.wg_peers) for other in (a2, a3, a4)]
        return own == a1.public_key and all(
            peers is not None and a1.public_key in peers and old_key not in peers
            for peers in others
        )

    await eventually(rekeyed, 10, "m1 and its peers use m1's new key")
    await mesh_pings([(a1, a4), (a4, a1), (a2, a1)], seconds=15)
    assert a1.process.running()  # no restart needed

    # -- An agent stopped with SIGTERM: offline for the others, still configured there.
    changes_before = {agent.name: len(_peers_changed(agent)) for agent in (a1, a2, a4)}
    a3.process.send(signal.SIGTERM)
    assert await a3.process.exit_code(10) == 0
    await _online(mesh, [a3], online=False)
    assert a3.wg_peers() is None  # its interface is gone with it
    assert a3.machine.pids() == []  # and so is its wireguard-go
    for agent in (a1, a2, a4):

        async def heard(agent: Agent = agent) -> bool:
            lines = _peers_changed(agent)[changes_before[agent.name] :]
            return any("3 peers (2 online)" in line for line in lines)

        await eventually(heard, 10, f"{agent.name} learns that m3 is offline")
        peers = agent.wg_peers()
        assert peers is not None
        assert a3.public_key in peers  # offline peers stay configured

    # -- A device revoked through the API: gone from every other's WireGuard peers.
    devices = await mesh.devices()
    await mesh.api("POST", f"/orgs/{mesh.org_id}/devices/{devices['m2']['id']}/revoke")
    removal_seconds = await dropped(a2, [a1, a4], 5)
    await exits_revoked(a2, 10)
    assert not await ping(a1.machine, a2.virtual_ip, wait=0.5)
    print(f"revoked device gone from the peers after {removal_seconds:.2f} s")

    for agent in (a1, a2, a3, a4):
        assert agent.enrollment.credential not in agent.log()
    print(f"scenario took {time.monotonic() - started:.1f} s")


async def _configured_key(agent: Agent, other: Agent) -> None:
    async def probe() -> bool:
        peers = await asyncio.to_thread(agent.wg_peers)
        return peers is not None and other.public_key in peers

    await eventually(probe, 10, f"{agent.name} knows {other.name}'s key (enrolled)")


async def _connected_at(mesh: Mesh, agent: Agent) -> float:
    """Unix time of the agent's current session start, from ``connection_status``."""

    async def row() -> str | None:
        for item in await mesh.connections():
            if item["peer_id"] == agent.enrollment.device.peer_id and item["status"] == "connected":
                value: str = item["connected_at"]
                return value
        return None

    stamp = await eventually(row, 10, f"{agent.name} has a connected row")
    return datetime.fromisoformat(stamp).timestamp()
