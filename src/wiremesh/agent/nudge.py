"""One empty datagram through the tunnel, to finish a handshake the peer started.

See ``PathSelector.take_newly_direct``: the side that answered a handshake counts it only
once a packet arrives over the new session.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Final

__all__ = ["CONFIRM_PORT", "send_one_packet"]

CONFIRM_PORT: Final = 9
"""The discard port: what :func:`send_one_packet` sends is dropped (or refused) there."""


def send_one_packet(virtual_ip: str) -> None:
    """An empty UDP datagram to a peer's overlay address, through the tunnel: it completes a
    handshake the peer started (see ``PathSelector.take_newly_direct``). Best effort."""
    family = socket.AF_INET6 if ipaddress.ip_address(virtual_ip).version == 6 else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(b"", (virtual_ip, CONFIRM_PORT))
