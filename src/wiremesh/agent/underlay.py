"""Noticing that this machine moved: the local address it reaches its server from changed.

A laptop that changes networks (or a server whose address is renumbered) keeps its
WebSocket and its WireGuard sessions on paper, but the TCP connection is bound to an
address that is gone, and the peers keep sending to the old endpoint. The server would
notice only at its heartbeat timeout, the peers after their next handshake retries.

The session loop asks :class:`UnderlayWatch` on every path tick (half a second) which
local address the kernel would use now to reach the server: a UDP ``connect`` and
``getsockname``, two system calls, no packet sent, no helper process and no netlink
socket to keep. When it differs from the one the session started with, the agent
re-connects at once (the new session supersedes the old one on the server, which then
gives every peer the new endpoint) and sends one packet through the tunnel to each peer
(WireGuard roams a peer's endpoint to wherever its last authenticated packet came from,
so they reach this device again before the server has told them anything).

What it does not see: a change of the *public* address behind a NAT whose local side
stays the same. That one is noticed as before, by the peers' handshakes and the
heartbeat.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Final

__all__ = ["DISCARD_PORT", "UnderlayWatch", "route_source"]

DISCARD_PORT: Final = 9
"""Any port does: ``connect`` on a UDP socket sends nothing, it only picks a route."""


def route_source(remote: str) -> str | None:
    """The local address the kernel picks now to reach ``remote``; ``None``: no route."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(remote).version == 6 else socket.AF_INET
    except ValueError:
        return None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((remote, DISCARD_PORT))
            return str(sock.getsockname()[0])
    except OSError:  # no route (the address went and no other took its place)
        return None


class UnderlayWatch:
    """Compares the route to one server address with what it was when the session began.

    The first known source is the baseline (the session's own address, in effect): a
    machine whose routes pick another source than its TCP connection for some reason of
    its own is then not re-connected over and over.
    """

    def __init__(
        self, remote: str | None, lookup: Callable[[str], str | None] = route_source
    ) -> None:
        self.remote = remote
        self._lookup = lookup
        self.baseline = lookup(remote) if remote is not None else None

    def moved(self) -> tuple[str, str] | None:
        """``(old, new)`` source address when the route now leaves from another one."""
        if self.remote is None:
            return None
        now = self._lookup(self.remote)
        if now is None:
            return None  # nothing to re-connect from yet
        if self.baseline is None:
            self.baseline = now
            return None
        if now == self.baseline:
            return None
        return self.baseline, now
