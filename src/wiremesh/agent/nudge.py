"""One empty datagram through the tunnel, to make WireGuard talk to a peer now.

Three uses: to finish a handshake the peer started (see ``PathSelector.take_newly_direct``:
the side that answered a handshake counts it only once a packet arrives over the new
session); after a key rotation, to start a handshake with every peer with the new key
(:func:`send_to_each`); after this machine's address changed, to show every peer the new
source, which WireGuard roams to (after :func:`endpoints_again`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Final

from wiremesh.agent.backend import PeerChange, PeerState, UpdatePeer

__all__ = ["CONFIRM_PORT", "endpoints_again", "send_one_packet", "send_to_each"]

CONFIRM_PORT: Final = 9
"""The discard port: what :func:`send_one_packet` sends is dropped (or refused) there."""


def send_one_packet(virtual_ip: str) -> None:
    """An empty UDP datagram to a peer's overlay address, through the tunnel: it completes a
    handshake the peer started (see ``PathSelector.take_newly_direct``). Best effort."""
    family = socket.AF_INET6 if ipaddress.ip_address(virtual_ip).version == 6 else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(b"", (virtual_ip, CONFIRM_PORT))


def send_to_each(virtual_ips: Iterable[str], own_ip: str) -> int:
    """:func:`send_one_packet` to every address but this device's own; how many."""
    addresses = sorted(set(virtual_ips) - {own_ip})
    for address in addresses:
        send_one_packet(address)
    return len(addresses)


def endpoints_again(actual: Mapping[str, PeerState]) -> list[PeerChange]:
    """Each peer's endpoint set again, to the one in use: WireGuard remembers the local
    address it last sent each peer from and keeps using it, so with that address gone every
    send fails until the peer's next packet comes in; setting the endpoint forgets it (and,
    with the keepalive, sends one at once)."""
    return [
        UpdatePeer(key, endpoint=state.in_use or state.endpoint)
        for key, state in sorted(actual.items())
        if state.in_use or state.endpoint
    ]
