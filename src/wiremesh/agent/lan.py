"""This machine's own IPv4 addresses, announced as ``lan`` candidates.

Two devices behind one NAT cannot reach each other at their public mapping (routers do
not hairpin), but can at their LAN addresses; the agent sends its addresses in ``auth``
and each peer tries them first when it shares this device's public address
(docs/nat-traversal.md). One primary address per interface (``SIOCGIFADDR``), without
loopback, link-local and the overlay's own network. Linux only; elsewhere, none.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import sys
from typing import Final

SIOCGIFADDR: Final = 0x8915
_IFREQ_SIZE: Final = 40


def own_addresses(overlay: str | None = None) -> list[str]:
    """The machine's IPv4 addresses worth a try from the same LAN, sorted, at most 8."""
    if not sys.platform.startswith("linux"):
        return []
    skip = ipaddress.ip_network(overlay, strict=False) if overlay else None
    found: set[ipaddress.IPv4Address] = set()
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            request = struct.pack(f"{_IFREQ_SIZE}s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
            except OSError:  # no IPv4 address on it
                continue
            address = ipaddress.IPv4Address(answer[20:24])
            if address.is_loopback or address.is_link_local or address.is_unspecified:
                continue
            if skip is not None and address in skip:
                continue
            found.add(address)
    return [str(address) for address in sorted(found)][:8]


def lan_candidates(listen_port: int, overlay: str | None = None) -> list[str]:
    """``address:port`` for each of :func:`own_addresses`; none without a known port."""
    if not 1 <= listen_port <= 65535:
        return []
    return [f"{address}:{listen_port}" for address in own_addresses(overlay)]
