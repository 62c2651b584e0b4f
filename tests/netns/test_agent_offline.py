"""Two agents as people run them: a chosen MTU, and a restart while the server is down.

Each agent runs ``python -m wiremesh.agent up --backend wireguard-go`` on its machine
(network + mount namespace) with the server on the lab's bridge. The two mesh; the server
stops; one agent is restarted and must reach the other from its peer cache alone, within a
few seconds. Checked from outside: ``ip link``, ping, the agent's log.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.netns.mesh import Mesh, configured, first_reply, mesh_pings

pytestmark = pytest.mark.netns

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
