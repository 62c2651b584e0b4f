"""Two agents as people run them: a chosen MTU, and a restart while the server is down.

Each agent runs ``python -m wiremesh.agent up --backend wireguard-go`` on its machine
(network + mount namespace) with the server on the lab's bridge. The two mesh; the server
stops; one agent is restarted and must reach the other from its peer cache alone, within a
few seconds. On an underlay that carries 1400 bytes (a PPPoE or tunnelled link), agents
started with ``--mtu`` to match carry full-size packets that may not be fragmented.
Checked from outside: ``ip link``, ping, the agent's log.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.netns.lab import Machine
from tests.netns.mesh import Mesh, configured, first_reply, mesh_pings

pytestmark = pytest.mark.netns

UNDERLAY_MTU = 1400
TUNNEL_MTU = UNDERLAY_MTU - 60
"""WireGuard over IPv4 adds 60 bytes: IPv4 (20), UDP (8), its own header and tag (32)."""
ICMP_OVERHEAD = 28
"""An echo request's IPv4 and ICMP headers: ``ping -s`` counts only the payload."""
RESTART_BUDGET = 8.0
"""From starting the agent again (Python start-up on a busy machine included) to a reply."""


async def test_an_agent_restarted_without_its_server_meshes_from_its_peer_cache(
    mesh: Mesh,
) -> None:
    one = await mesh.enroll("m1", mesh.lab.machine(1), extra_args=["--mtu", "1380"])
    two = await mesh.enroll("m2", mesh.lab.machine(2))
    for agent in (one, two):
        agent.start()
    await configured(one, [two])
    await configured(two, [one])
    await mesh_pings([(one, two), (two, one)], seconds=15)
    assert (one.mtu(), two.mtu()) == (1380, 1420)  # 1420: the default, set explicitly

    await mesh.server.stop()
    one.process.send(signal.SIGTERM)
    assert await one.process.exit_code(20) == 0
    assert one.mtu() is None  # its interface went with it

    started = time.time()
    one.start()
    reply = await first_reply(one.machine, two.virtual_ip, 30, wait=0.2)
    assert reply is not None, one.log()
    print(f"restart without the server to the first reply: {reply - started:.2f} s")
    assert reply - started <= RESTART_BUDGET, one.log()
    assert "the server cannot be reached: configuring the last known 1 peer" in one.log()
    assert await first_reply(two.machine, one.virtual_ip, 5) is not None


def _ping_unfragmented(machine: Machine, address: str, size: int) -> tuple[int, str]:
    """One echo request of ``size`` bytes in all, Don't Fragment set; exit status, output."""
    result = machine.sh(
        "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", str(size - ICMP_OVERHEAD), address,
        check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


async def test_full_size_packets_pass_a_smaller_underlay_with_a_matching_mtu(mesh: Mesh) -> None:
    machines = [mesh.lab.machine(1), mesh.lab.machine(2)]
    for machine in machines:
        machine.sh("ip", "link", "set", "dev", "eth0", "mtu", str(UNDERLAY_MTU))
    mtu = ["--mtu", str(TUNNEL_MTU)]
    one = await mesh.enroll("m1", machines[0], extra_args=mtu)
    two = await mesh.enroll("m2", machines[1], extra_args=mtu)
    for agent in (one, two):
        agent.start()
    await configured(one, [two])
    await configured(two, [one])
    await mesh_pings([(one, two), (two, one)], seconds=15)
    assert (one.mtu(), two.mtu()) == (TUNNEL_MTU, TUNNEL_MTU)

    for source, target in ((one, two), (two, one)):
        status, output = _ping_unfragmented(source.machine, target.virtual_ip, TUNNEL_MTU)
        assert status == 0, output  # the largest packet the tunnel takes, whole, both ways
        status, output = _ping_unfragmented(source.machine, target.virtual_ip, TUNNEL_MTU + 1)
        assert status != 0, output
        assert "mtu" in output.lower(), output  # refused here, not lost on the way
