"""Two agents as people run them: a chosen MTU on the interface.

Each agent runs ``python -m wiremesh.agent up --backend wireguard-go`` on its machine
(network + mount namespace) with the server on the lab's bridge. Checked from outside with
``ip link``.
"""

from __future__ import annotations

import pytest

from tests.netns.mesh import Mesh, configured, mesh_pings

pytestmark = pytest.mark.netns


async def test_each_interface_has_the_configured_mtu(mesh: Mesh) -> None:
    one = await mesh.enroll("m1", mesh.lab.machine(1), extra_args=["--mtu", "1380"])
    two = await mesh.enroll("m2", mesh.lab.machine(2))
    for agent in (one, two):
        agent.start()
    await configured(one, [two])
    await configured(two, [one])
    await mesh_pings([(one, two), (two, one)], seconds=15)
    assert (one.mtu(), two.mtu()) == (1380, 1420)  # 1420: the default, set explicitly
