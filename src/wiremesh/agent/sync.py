"""One reconcile step: what WireGuard has, each peer's path, the difference applied.

The session loop calls :meth:`WireGuardSync.step` at every welcome, peer or relay change
and path tick; this module knows nothing of sockets or sessions, only of the backend, the
path selector and the status it fills in.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from wiremesh.agent.backend import BackendUnavailable, DeviceConfig, WireGuardBackend
from wiremesh.agent.nudge import send_one_packet
from wiremesh.agent.paths import PathSelector, PeerPath
from wiremesh.agent.reconcile import plan_table
from wiremesh.agent.state import Enrollment
from wiremesh.agent.status import AgentStatus
from wiremesh.protocol import Device, Peer, Relay

__all__ = ["BackendError", "WireGuardSync", "backend_call", "device_config"]

logger = logging.getLogger("wiremesh.agent")

_T = TypeVar("_T")


class BackendError(Exception):
    """The WireGuard backend failed; the agent stops (the message says what failed)."""


async def backend_call(what: str, call: Awaitable[_T]) -> _T:
    """Await a backend call; a refusal by the system becomes a :class:`BackendError`."""
    try:
        return await call
    except (OSError, BackendUnavailable) as exc:
        raise BackendError(f"the WireGuard backend could not {what}: {exc}") from exc


def device_config(device: Device | Enrollment, private_key: str, listen_port: int) -> DeviceConfig:
    """This device's interface: its virtual IP with the network's prefix length."""
    if isinstance(device, Enrollment):
        virtual_ip, network = device.device.virtual_ip, device.network.network
    else:
        virtual_ip, network = device.virtual_ip, device.network
    prefix = ipaddress.ip_network(network, strict=False).prefixlen
    return DeviceConfig(
        address=ipaddress.ip_interface(f"{virtual_ip}/{prefix}"),
        private_key=private_key,
        listen_port=listen_port,
    )


class WireGuardSync:
    """Keeps the backend's peer table in line with the session's peers and relays.

    ``paths`` and ``status`` belong to the runner (they outlive sessions); this fills them.
    """

    def __init__(self, backend: WireGuardBackend, paths: PathSelector, status: AgentStatus) -> None:
        self.backend = backend
        self.paths = paths
        self.status = status
        self.peer_paths: list[PeerPath] = []
        """Each peer's path as of the last step (what is reported to the server)."""

    async def step(
        self, peers: Mapping[str, Peer], relays: Sequence[Relay], own_public_key: str | None
    ) -> int:
        """One reconcile; how many peer changes were applied."""
        actual = await backend_call("read the peers", self.backend.peers())
        self.paths.own_public_key = own_public_key
        handshakes = {key: state.latest_handshake for key, state in actual.items()}
        received = {key: state.rx_bytes for key, state in actual.items()}
        target, readd = self.paths.target(peers, relays, handshakes, time.time(), received)
        changes = plan_table(target, actual, readd)
        if changes:
            await backend_call("apply peer changes", self.backend.apply(changes))
            logger.info("WireGuard: applied %d peer changes", len(changes))
        for address in self.paths.take_newly_direct():
            send_one_packet(address)
        self.peer_paths = self.paths.paths(peers, actual)
        self.status.set_peers(peers, self.peer_paths, actual)
        return len(changes)
