"""NAT traversal end to end: real agents with wireguard-go behind the lab's NAT routers.

An open machine (m1) runs ``wiremesh relay up``; the server listens on the lab's bridge.
Two machines sit behind two routers of their own and run ``agent up``:

- behind two ``masquerade`` routers (endpoint-independent mappings), the relay sees each
  device's mapping, the server hands it to the other, both knock at once and the pair
  meets directly: each ``wg show`` names the other router's public address, and the peer's
  /32 sits on the peer's own entry, not the relay's;
- behind two ``symmetric`` routers (a new port per destination), no direct path can open:
  the pair pings through the relay, whose entry carries the other's /32.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time

import pytest

from tests.netns.lab import NatMode, Router
from tests.netns.mesh import Agent, NatMesh, first_reply
from tests.support.processes import CONNECT_SECONDS
from tests.support.waiting import eventually
from wiremesh.agent.paths import KNOCK_SECONDS, RETRY_SECONDS

pytestmark = pytest.mark.netns

DIRECT_SECONDS = 20.0
"""From both agents started to a direct path on both ends (knocks succeed in ~50 ms in the
lab; the rest is Python start-up, enrolment into the relay and the server's deltas)."""


async def _pair(nat: NatMesh, mode: NatMode) -> tuple[Agent, Agent, Router, Router]:
    lab = nat.mesh.lab
    r1, r2 = lab.router(1, mode), lab.router(2, mode)
    a = await nat.mesh.enroll("a", lab.machine(2, behind=r1))
    b = await nat.mesh.enroll("b", lab.machine(3, behind=r2))
    for agent in (a, b):
        agent.start()
    return a, b, r1, r2


async def _pings_both_ways(a: Agent, b: Agent, seconds: float) -> float:
    started = time.time()
    replies = await asyncio.gather(
        first_reply(a.machine, b.virtual_ip, seconds, wait=0.5),
        first_reply(b.machine, a.virtual_ip, seconds, wait=0.5),
    )
    assert all(replies), f"no reply both ways within {seconds} s: {replies}"
    return max(r for r in replies if r is not None) - started


async def test_two_masquerade_nats_meet_directly(nat_mesh: NatMesh) -> None:
    started = time.monotonic()
    a, b, r1, r2 = await _pair(nat_mesh, NatMode.MASQUERADE)
    relay_key = nat_mesh.relay_key()

    async def direct() -> bool:
        ends = await asyncio.gather(
            asyncio.to_thread(a.wg_endpoints), asyncio.to_thread(b.wg_endpoints)
        )
        routes = await asyncio.gather(
            asyncio.to_thread(a.allowed_ips), asyncio.to_thread(b.allowed_ips)
        )
        return (
            ends[0].get(b.public_key) == f"{r2.address}:51820"
            and ends[1].get(a.public_key) == f"{r1.address}:51820"
            and b.host_route in routes[0].get(b.public_key, set())
            and a.host_route in routes[1].get(a.public_key, set())
            and b.host_route not in routes[0].get(relay_key, set())
            and a.host_route not in routes[1].get(relay_key, set())
        )

    await eventually(direct, CONNECT_SECONDS + DIRECT_SECONDS, "a and b on a direct path")
    direct_at = time.monotonic() - started
    took = await _pings_both_ways(a, b, 5)
    # still direct after the pings: the endpoints are the routers', not the relay's
    assert a.wg_endpoints()[b.public_key] == f"{r2.address}:51820"
    assert b.wg_endpoints()[a.public_key] == f"{r1.address}:51820"
    print(
        f"direct through two masquerade NATs: path after {direct_at:.2f} s from the "
        f"routers' creation, replies both ways {took:.2f} s later"
    )


async def test_two_symmetric_nats_meet_through_the_relay(nat_mesh: NatMesh) -> None:
    started = time.monotonic()
    a, b, _r1, _r2 = await _pair(nat_mesh, NatMode.SYMMETRIC)
    relay_key = nat_mesh.relay_key()

    async def relayed() -> bool:
        routes = await asyncio.gather(
            asyncio.to_thread(a.allowed_ips), asyncio.to_thread(b.allowed_ips)
        )
        on_relay_a, on_relay_b = (table.get(relay_key, set()) for table in routes)
        return b.host_route in on_relay_a and a.host_route in on_relay_b

    await eventually(relayed, CONNECT_SECONDS, "a and b route each other via the relay")
    took = await _pings_both_ways(a, b, 15)
    # the routes stay on the relay: no direct handshake can happen through symmetric NATs
    routes = a.allowed_ips()
    assert b.host_route in routes[relay_key], routes
    print(
        f"through the relay between two symmetric NATs: replies both ways "
        f"{time.monotonic() - started:.2f} s after the routers' creation ({took:.2f} s "
        f"after the routes were on the relay)"
    )


async def test_two_behind_one_nat_meet_at_their_lan_addresses(nat_mesh: NatMesh) -> None:
    """The router does not hairpin and the two share its one mapping for port 51820: only
    their LAN addresses (``lan`` candidates, tried first behind the same public address)
    connect them."""
    started = time.monotonic()
    lab = nat_mesh.mesh.lab
    router = lab.router(1, NatMode.MASQUERADE)
    a = await nat_mesh.mesh.enroll("a", lab.machine(2, behind=router))
    b = await nat_mesh.mesh.enroll("b", lab.machine(3, behind=router))
    for agent in (a, b):
        agent.start()
    relay_key = nat_mesh.relay_key()

    async def local() -> bool:
        ends = await asyncio.gather(
            asyncio.to_thread(a.wg_endpoints), asyncio.to_thread(b.wg_endpoints)
        )
        routes = await asyncio.gather(
            asyncio.to_thread(a.allowed_ips), asyncio.to_thread(b.allowed_ips)
        )
        return (
            ends[0].get(b.public_key) == f"{b.machine.address}:51820"
            and ends[1].get(a.public_key) == f"{a.machine.address}:51820"
            and b.host_route in routes[0].get(b.public_key, set())
            and a.host_route in routes[1].get(a.public_key, set())
            and b.host_route not in routes[0].get(relay_key, set())
        )

    await eventually(local, CONNECT_SECONDS + DIRECT_SECONDS, "a and b on their LAN path")
    local_at = time.monotonic() - started
    took = await _pings_both_ways(a, b, 5)
    assert a.wg_endpoints()[b.public_key] == f"{b.machine.address}:51820"
    print(
        f"two behind one NAT at their LAN addresses: path after {local_at:.2f} s from the "
        f"router's creation, replies both ways {took:.2f} s later"
    )


async def test_a_relayed_pair_moves_to_a_direct_path_once_one_opens(nat_mesh: NatMesh) -> None:
    """A firewall between the two sites keeps the pair on the relay; once it goes, the direct
    path forms by itself: while the agents rest between rounds of knocks, WireGuard keeps
    retrying the first candidate every 5 s. Traffic flowing all along loses at most a
    packet or two in the move."""
    lab = nat_mesh.mesh.lab
    r1, r2 = lab.router(1, NatMode.MASQUERADE), lab.router(2, NatMode.MASQUERADE)
    r1.block(r2.address)
    r2.block(r1.address)
    a = await nat_mesh.mesh.enroll("a", lab.machine(2, behind=r1))
    b = await nat_mesh.mesh.enroll("b", lab.machine(3, behind=r2))
    for agent in (a, b):
        agent.start()

    def on(agent: Agent, other: Agent) -> str:
        return agent.paths().get(other.name, ("-", None))[0]

    async def relayed() -> bool:
        return on(a, b) == on(b, a) == "relay"

    await eventually(relayed, CONNECT_SECONDS, "a and b on the relay behind the firewall")
    await _pings_both_ways(a, b, 10)
    pinger = await asyncio.create_subprocess_exec(
        *a.machine.argv("ping", "-n", "-i", "0.2", b.virtual_ip),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        # every candidate has failed by now: the agents rest for RETRY_SECONDS
        await asyncio.sleep(KNOCK_SECONDS * 3 + 1)
        r1.unblock()
        r2.unblock()
        opened = time.monotonic()

        async def direct() -> bool:
            return on(a, b) == on(b, a) == "direct"

        await eventually(direct, RETRY_SECONDS + 15, "a and b move to the direct path")
        moved = time.monotonic() - opened
        await asyncio.sleep(2)  # traffic on the direct path for a while
    finally:
        pinger.send_signal(signal.SIGINT)
        raw, _ = await asyncio.wait_for(pinger.communicate(), 10)
    output = raw.decode()
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert summary is not None, output
    sent, received = int(summary[1]), int(summary[2])
    assert b.host_route in a.allowed_ips()[b.public_key]  # WireGuard agrees: its own entry
    assert sent - received <= 2, f"{sent - received} of {sent} echo requests lost: {output}"
    print(
        f"relay -> direct: direct {moved:.1f} s after the firewall opened; "
        f"{sent - received} of {sent} pings lost"
    )
