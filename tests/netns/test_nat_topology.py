"""A mesh across every kind of NAT, each pair on the path its NATs allow; then restarts and
a relay failure, all with real agents, relays and wireguard-go in the lab.

The machines (relay ``r1`` runs on machine 1, on the open underlay):

- ``open`` on the underlay itself;
- ``a`` and ``b`` behind one ``masquerade`` router (no hairpin: they meet at their LAN
  addresses, the ``local`` path);
- ``c`` behind another ``masquerade`` router (``direct`` to ``a`` and ``b`` by knocks from
  both ends);
- ``d`` and ``e`` each behind a ``symmetric`` router (a new port per destination): no knock
  can open a path to a NATed peer, so they reach ``a``, ``b``, ``c`` and each other through
  the relay, and ``open`` directly (its WireGuard answers whatever port a knock came from).

Every device uses the port it drew at enrollment (no ``--listen-port``): devices that share
a NAT and a port would lose the NAT's one-mapping-per-socket property.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time

import pytest

from tests.netns.lab import NatMode, Router
from tests.netns.mesh import Agent, NatMesh, first_reply, mesh_pings
from tests.support.processes import CONNECT_SECONDS
from tests.support.waiting import eventually

pytestmark = pytest.mark.netns

FORMATION_SECONDS = 60.0
"""Six agents and their wireguard-go starting together on a shared two-core machine."""
RESTART_REACH_SECONDS = 5.0
"""The issue's bound: a restarted open machine reaches its NATed peers within this."""


def _expected(viewer: Agent, peer: Agent, routers: dict[str, Router]) -> tuple[str, str]:
    """The path ``viewer`` should use to ``peer``, and the host of the endpoint it uses."""
    mine, theirs = routers.get(viewer.name), routers.get(peer.name)
    if mine is not None and mine is theirs:
        return "local", peer.machine.address
    if theirs is None:
        return "direct", peer.machine.address
    if mine is None or (mine.nat, theirs.nat) == (NatMode.MASQUERADE, NatMode.MASQUERADE):
        return "direct", theirs.address
    return "relay", ""


def _host(endpoint: str | None) -> str:
    return (endpoint or "").rsplit(":", 1)[0]


async def test_every_pair_takes_the_path_its_nats_allow_and_an_open_restart_is_quick(
    nat_mesh: NatMesh,
) -> None:
    lab, mesh = nat_mesh.mesh.lab, nat_mesh.mesh
    relay = nat_mesh.relays[0]
    masq1, masq2 = lab.router(1, NatMode.MASQUERADE), lab.router(2, NatMode.MASQUERADE)
    sym3, sym4 = lab.router(3, NatMode.SYMMETRIC), lab.router(4, NatMode.SYMMETRIC)
    placement: list[tuple[str, int, Router | None]] = [
        ("open", 2, None), ("a", 3, masq1), ("b", 4, masq1), ("c", 5, masq2),
        ("d", 6, sym3), ("e", 7, sym4),
    ]  # fmt: skip
    agents: list[Agent] = []
    routers: dict[str, Router] = {}
    for name, number, router in placement:
        machine = lab.machine(number, behind=router)
        agents.append(await mesh.enroll(name, machine, listen_port=None))
        if router is not None:
            routers[name] = router
    started = time.monotonic()
    for agent in agents:
        agent.start()

    def wrong_paths() -> list[str]:
        wrong = []
        for viewer, peer in itertools.permutations(agents, 2):
            path, endpoint = viewer.paths().get(peer.name, ("-", None))
            want, host = _expected(viewer, peer, routers)
            if want == "relay":
                host = _host(relay.endpoint)
            if (path, _host(endpoint)) != (want, host):
                wrong.append(f"{viewer.name}->{peer.name}: {path} {endpoint}, want {want} {host}")
        return wrong

    async def settled() -> bool:
        return not await asyncio.to_thread(wrong_paths)

    try:
        await eventually(settled, FORMATION_SECONDS, "every pair on its expected path")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {wrong_paths()}") from None
    formed = time.monotonic() - started
    # the agents' view is WireGuard's: a relayed peer's /32 sits on the relay's entry
    d, e = agents[4], agents[5]
    assert e.host_route in d.allowed_ips()[relay.public_key]
    took = await mesh_pings(list(itertools.permutations(agents, 2)), 15)
    print(f"6 devices behind 4 NATs: every path as expected {formed:.1f} s after start; "
          f"slowest first ping {max(took.values()):.2f} s: {took}")  # fmt: skip

    # The open machine's agent restarts (a service restart: SIGTERM, then a new process).
    # Its WireGuard sessions are gone; its NATed peers' are not, and WireGuard alone would
    # wait for a rekey. They must knock anew, through their own NATs.
    opened = agents[0]
    opened.process.send(signal.SIGTERM)
    assert await opened.process.exit_code(15) == 0
    restarted = time.time()  # first_reply gives wall-clock times
    opened.start()
    natted = agents[1:]
    replies = await asyncio.gather(
        *(first_reply(opened.machine, peer.virtual_ip, 20, wait=0.3) for peer in natted)
    )
    reached = {
        peer.name: None if when is None else round(when - restarted, 2)
        for peer, when in zip(natted, replies, strict=True)
    }
    print(f"open agent restarted: first reply from each NATed peer after (s): {reached}")
    late = {name: seconds for name, seconds in reached.items()
            if seconds is None or seconds > RESTART_REACH_SECONDS}  # fmt: skip
    assert not late, f"not reached within {RESTART_REACH_SECONDS} s of the restart: {late}"


async def test_a_dead_relay_hands_its_pairs_to_the_next(nat_mesh: NatMesh) -> None:
    """Two symmetric NATs can only meet through a relay; ``r1`` (first in name order) carries
    them until it dies, then ``r2`` does."""
    lab, mesh = nat_mesh.mesh.lab, nat_mesh.mesh
    first = nat_mesh.relays[0]
    second = await nat_mesh.add_relay("r2", lab.machine(8))
    d = await mesh.enroll("d", lab.machine(6, behind=lab.router(3, NatMode.SYMMETRIC)))
    e = await mesh.enroll("e", lab.machine(7, behind=lab.router(4, NatMode.SYMMETRIC)))
    for agent in (d, e):
        agent.start()

    async def carried_by(relay_key: str) -> bool:
        tables = await asyncio.gather(
            asyncio.to_thread(d.allowed_ips), asyncio.to_thread(e.allowed_ips)
        )
        return e.host_route in tables[0].get(relay_key, set()) and d.host_route in tables[1].get(
            relay_key, set()
        )

    await eventually(lambda: carried_by(first.public_key), CONNECT_SECONDS, "d and e relayed by r1")
    await mesh_pings([(d, e), (e, d)], 15)

    first.process.kill()  # the relay host crashes: its wireguard-go goes with it
    killed = time.time()
    replies = await asyncio.gather(
        first_reply(d.machine, e.virtual_ip, 30, wait=0.3),
        first_reply(e.machine, d.virtual_ip, 30, wait=0.3),
    )
    assert all(replies), f"no replies through r2 within 30 s: {replies}"
    recovered = max(r for r in replies if r is not None)
    assert await carried_by(second.public_key)
    assert first.public_key not in (d.wg_peers() or set())
    print(f"r1 killed: d and e ping through r2 after {recovered - killed:.2f} s")
