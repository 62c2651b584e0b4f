"""The lab's NAT routers behave like the NATs devices sit behind, shown with plain UDP.

What NAT traversal will rely on, and what it must work around, each checked from the
outside: where an echo server on the underlay sees a LAN machine's datagrams come from,
which inbound datagrams reach the machine, and the router's count of what it dropped.

- ``masquerade`` (Linux's default) keeps a socket's port and uses that one public port
  for every destination; ``symmetric`` (``fully-random``) gives each destination its own;
- nothing comes in unasked, and once a socket has sent somewhere only that address and
  port may answer; so two NATed machines open a path only when both send;
- two machines behind one router do not reach each other at their public mappings (no
  hairpin), only at their LAN addresses.
- two machines behind one router that use the same port lose the one-mapping property:
  each keeps the port only toward the destinations it reached first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.netns.lab import Lab, NatMode, Router
from tests.netns.udp import Address, UdpSocket

pytestmark = pytest.mark.netns

STUN = 3478
"""The echo server's port (STUN's, for the reader)."""
OTHER_STUN = 3479
PORT = 41641
"""The LAN machines' source port, as a WireGuard listen port would be."""
PORT_UNREACHABLE = [3, 3]
"""ICMP destination unreachable, port unreachable."""

Udp = Callable[..., UdpSocket]


def _dropped(router: Router, count: int, seconds: float = 3) -> None:
    """Wait until ``router`` has dropped ``count`` inbound packets; fail if it drops more."""
    deadline = time.monotonic() + seconds
    while (dropped := router.dropped()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dropped == count, f"{router.name} dropped {dropped} packets, expected {count}"


def test_masquerade_maps_one_socket_to_one_public_port(nat_lab: Lab, udp: Udp) -> None:
    router = nat_lab.router(1, NatMode.MASQUERADE)
    device = nat_lab.machine(1, behind=router)
    first, second = nat_lab.machine(2), nat_lab.machine(3)
    udp(first, STUN, extra_ports=(OTHER_STUN,), echo=True)
    udp(second, STUN, echo=True)
    sock = udp(device, PORT)

    seen = [
        sock.ask((first.address, STUN)),
        sock.ask((first.address, OTHER_STUN)),
        sock.ask((second.address, STUN)),
    ]
    assert seen == [(router.address, PORT)] * 3  # the router's address, the socket's own port
    # a machine on the LAN reaches the lab's host (where a test runs the server)
    ping = device.sh("ping", "-n", "-c", "1", "-W", "2", nat_lab.host_address, check=False)
    assert ping.returncode == 0, ping.stdout


def test_symmetric_nat_maps_each_destination_anew(nat_lab: Lab, udp: Udp) -> None:
    router = nat_lab.router(1, NatMode.SYMMETRIC)
    device = nat_lab.machine(1, behind=router)
    first, second = nat_lab.machine(2), nat_lab.machine(3)
    udp(first, STUN, extra_ports=(OTHER_STUN,), echo=True)
    udp(second, STUN, echo=True)
    sock = udp(device, PORT)

    seen = [
        sock.ask((first.address, STUN)),
        sock.ask((first.address, OTHER_STUN)),  # the same host, another port: new as well
        sock.ask((second.address, STUN)),
    ]
    assert {mapped and mapped[0] for mapped in seen} == {router.address}
    # random ports: two of three could coincide, about once in 20,000 runs
    assert len({mapped and mapped[1] for mapped in seen}) == 3, seen
    assert sock.ask((first.address, STUN)) == seen[0]  # a mapping is kept while in use


@pytest.mark.parametrize("mode", list(NatMode))
def test_nothing_comes_in_unasked(nat_lab: Lab, udp: Udp, mode: NatMode) -> None:
    router = nat_lab.router(1, mode)
    device = nat_lab.machine(1, behind=router)
    server, stranger = nat_lab.machine(2), nat_lab.machine(3)
    udp(server, STUN, echo=True)
    sock = udp(device, PORT)
    from_stranger = udp(stranger, STUN)
    from_server_other_port = udp(server, OTHER_STUN)

    # Before the device sent anything, not even to the port it will use.
    from_server_other_port.send((router.address, PORT), "unasked", count=3)
    _dropped(router, 3)
    mapped = sock.ask((server.address, STUN))
    assert mapped is not None
    if mode is NatMode.MASQUERADE:  # the dropped packets left nothing that takes the port
        assert mapped == (router.address, PORT)

    # Once it has sent to server:STUN, only server:STUN gets in: not another host, and not
    # another port of the same host (port-restricted filtering).
    from_stranger.send(mapped, "intruder", count=2)
    from_server_other_port.send(mapped, "intruder", count=2)
    _dropped(router, 7)
    assert sock.take().datagrams == []
    assert sock.ask((server.address, STUN)) == mapped  # while the server still answers


def test_two_masquerade_routers_open_a_path_when_both_send(nat_lab: Lab, udp: Udp) -> None:
    first_router, second_router = nat_lab.router(1), nat_lab.router(2)
    first = nat_lab.machine(1, behind=first_router)
    second = nat_lab.machine(2, behind=second_router)
    server = nat_lab.machine(3)
    udp(server, STUN, echo=True)
    a, b = udp(first, PORT), udp(second, PORT)
    a_public, b_public = a.ask((server.address, STUN)), b.ask((server.address, STUN))
    assert a_public == (first_router.address, PORT)
    assert b_public == (second_router.address, PORT)

    # One after the other: the first datagram is dropped by the far router, but it opened
    # the near one, so the answer gets in, and from then on both directions work.
    a.send(b_public, "first")
    _dropped(second_router, 1)
    b.send(a_public, "second")
    assert a.take(3, until=b_public).texts_from(b_public) == ["second"]
    a.send(b_public, "third")
    assert b.take(3, until=a_public).texts_from(a_public) == ["third"]
    assert first_router.dropped() == 0

    # At the same time, from two fresh sockets: both hear the other, within moments.
    c, d = udp(first, PORT + 1), udp(second, PORT + 1)
    c_public, d_public = c.ask((server.address, STUN)), d.ask((server.address, STUN))
    assert c_public is not None
    assert d_public is not None
    c.begin("punch", to=list(d_public), seconds=3)
    d.begin("punch", to=list(c_public), seconds=3)
    punched = [c.answer(), d.answer()]
    assert all(result["heard"] for result in punched), punched
    assert max(result["seconds"] for result in punched) < 1, punched


def test_symmetric_nat_defeats_hole_punching(nat_lab: Lab, udp: Udp) -> None:
    symmetric = nat_lab.router(1, NatMode.SYMMETRIC)
    masquerade = nat_lab.router(2, NatMode.MASQUERADE)
    first = nat_lab.machine(1, behind=symmetric)
    second = nat_lab.machine(2, behind=masquerade)
    server = nat_lab.machine(3)
    udp(server, STUN, echo=True)
    a, b = udp(first, PORT), udp(second, PORT)
    a_public, b_public = a.ask((server.address, STUN)), b.ask((server.address, STUN))
    assert a_public is not None
    assert b_public is not None

    # a_public holds only for the server: toward b, a leaves from another port, which b's
    # router does not expect, and b's datagrams to a_public are not the server's.
    a.begin("punch", to=list(b_public), seconds=0.5)
    b.begin("punch", to=list(a_public), seconds=0.5)
    punched = [a.answer(), b.answer()]
    assert not any(result["heard"] for result in punched), punched
    assert symmetric.dropped() > 0
    assert masquerade.dropped() > 0


def test_machines_behind_one_router_meet_only_on_the_lan(nat_lab: Lab, udp: Udp) -> None:
    router = nat_lab.router(1)
    first, second = nat_lab.machine(1, behind=router), nat_lab.machine(2, behind=router)
    server = nat_lab.machine(3)
    udp(server, STUN, echo=True)
    a, b = udp(first, PORT), udp(second, PORT)

    # Both use the same port: the first keeps it, the second gets another public port.
    a_public, b_public = a.ask((server.address, STUN)), b.ask((server.address, STUN))
    assert a_public == (router.address, PORT)
    assert b_public is not None
    assert b_public[0] == router.address
    assert b_public[1] != PORT

    # No hairpin: b's public mapping, seen from the LAN, is the router itself, which has
    # no such port and says so.
    a.send(b_public, "hairpin")
    refused = a.take(3).errors
    assert [(e["offender"], e["icmp"]) for e in refused] == [(router.address, PORT_UNREACHABLE)]
    assert b.take().datagrams == []

    # The LAN addresses work.
    lan: Address = a.address
    a.send(b.address, "lan")
    assert b.take(3, until=lan).texts_from(lan) == ["lan"]


def test_one_port_on_two_machines_behind_one_router_breaks_the_single_mapping(
    nat_lab: Lab, udp: Udp
) -> None:
    """Each keeps the port toward the destinations it reached first and gets another toward
    the rest: what one server sees of them is not what every peer will see. Devices behind
    one NAT should not all listen on the same well-known port."""
    router = nat_lab.router(1)
    first, second = nat_lab.machine(1, behind=router), nat_lab.machine(2, behind=router)
    one, other = nat_lab.machine(3), nat_lab.machine(4)
    udp(one, STUN, echo=True)
    udp(other, STUN, echo=True)
    a, b = udp(first, PORT), udp(second, PORT)

    assert a.ask((one.address, STUN)) == (router.address, PORT)
    assert b.ask((other.address, STUN)) == (router.address, PORT)
    b_to_one, a_to_other = b.ask((one.address, STUN)), a.ask((other.address, STUN))
    assert b_to_one is not None
    assert a_to_other is not None
    assert b_to_one[1] != PORT
    assert a_to_other[1] != PORT
