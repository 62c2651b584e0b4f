"""The narrow interface between the agent and WireGuard: the contract every backend keeps.

The session loop only ever talks to a :class:`WireGuardBackend`: it configures the
interface once (:meth:`~WireGuardBackend.setup`), reads what is configured
(:meth:`~WireGuardBackend.peers`), applies the changes computed by
:func:`wiremesh.agent.reconcile.plan` (:meth:`~WireGuardBackend.apply`) and removes the
interface on exit (:meth:`~WireGuardBackend.teardown`).

This module imports nothing of wiremesh, so every backend (the in-memory one in
:mod:`wiremesh.agent.memory`, the real ones in :mod:`wiremesh.agent.wireguard`), the relay
and the reconciler can import it without importing each other. Choosing and building a
backend is :mod:`wiremesh.agent.factory`'s job, the only module that imports them all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_INTERFACE",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_LISTEN_PORT",
    "DEFAULT_MTU",
    "KEEPALIVE_RANGE",
    "MTU_RANGE",
    "AddPeer",
    "BackendName",
    "BackendUnavailable",
    "DeviceConfig",
    "PeerChange",
    "PeerState",
    "RemovePeer",
    "UpdatePeer",
    "WireGuardBackend",
    "apply_changes",
    "describe_change",
]

DEFAULT_LISTEN_PORT: Final = 51820
"""WireGuard's customary UDP port."""

DEFAULT_INTERFACE: Final = "wm0"
"""The WireGuard interface the real backends create."""

DEFAULT_MTU: Final = 1420
"""WireGuard's own default: a 1500-byte path less the largest (IPv6) encapsulation."""
MTU_RANGE: Final = (1280, 9000)
"""``--mtu`` bounds: IPv6 needs 1280 inside the tunnel; 9000 is a jumbo frame."""

DEFAULT_KEEPALIVE: Final = 25
"""Seconds between keepalives to every peer: keeps NAT mappings open (WireGuard's advice)."""
KEEPALIVE_RANGE: Final = (0, 3600)
"""``--keepalive`` bounds; 0 turns persistent keepalives off."""

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """This device's own WireGuard interface.

    ``address`` is the virtual IP with the network's prefix (``100.64.0.7/24``), so the
    route to the whole network goes through the interface. ``private_key`` is the base64
    WireGuard key; it is excluded from ``repr`` so a logged config never leaks it.
    ``listen_port`` is the UDP port wanted; 0 lets the backend pick a free one, and the
    port actually bound is :attr:`WireGuardBackend.listen_port` after ``setup``.
    """

    address: Interface
    private_key: str = field(repr=False)
    listen_port: int = DEFAULT_LISTEN_PORT

    def __post_init__(self) -> None:
        if not 0 <= self.listen_port <= 65535:
            raise ValueError("listen_port must be 0..65535")


@dataclass(frozen=True, slots=True)
class PeerState:
    """One configured WireGuard peer, as the backend reports it (keyed by public key).

    ``allowed_ips`` are CIDR strings (``100.64.0.8/32``); ``endpoint`` is ``ip:port`` or
    ``[ipv6]:port``, ``None`` when not known.
    """

    allowed_ips: frozenset[str]
    endpoint: str | None = None
    latest_handshake: float = field(default=0.0, compare=False)
    """Unix time of the last handshake (0: never); read-only, for path selection."""
    rx_bytes: int = field(default=0, compare=False)
    tx_bytes: int = field(default=0, compare=False)
    """Bytes received from and sent to the peer; read-only, for ``agent status``."""
    in_use: str | None = field(default=None, compare=False)
    """Where WireGuard sends to the peer now (it follows a peer that roamed, or whose knock
    came from another address than the one configured); read-only, for ``agent status``.
    ``endpoint`` stays the configured one, so a roamed peer is not set back every tick."""


@dataclass(frozen=True, slots=True)
class AddPeer:
    """Configure a new peer."""

    public_key: str
    allowed_ips: frozenset[str]
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class UpdatePeer:
    """Change an existing peer in place; a ``None`` field is left as it is.

    The peer is never removed and re-added, so its handshake and session keys survive.
    """

    public_key: str
    allowed_ips: frozenset[str] | None = None
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class RemovePeer:
    """Remove a peer."""

    public_key: str


PeerChange = AddPeer | UpdatePeer | RemovePeer
"""One step of a reconciliation plan; see :func:`wiremesh.agent.reconcile.plan`."""


@runtime_checkable
class WireGuardBackend(Protocol):
    """What the agent needs from a WireGuard implementation.

    Every method may raise :class:`BackendUnavailable` (or ``OSError``) when the system
    refuses; the agent then stops with a clear message.
    """

    @property
    def listen_port(self) -> int:
        """The UDP port WireGuard listens on (valid after ``setup``)."""
        ...

    async def setup(self, device: DeviceConfig) -> None:
        """Create (or re-configure) the interface: address, private key, listen port.

        Called once before the first connection, and again if the server reports another
        address. Peers already configured are kept.
        """
        ...

    async def apply(self, changes: list[PeerChange]) -> None:
        """Apply changes in order (removals first, as :func:`plan` emits them)."""
        ...

    async def peers(self) -> dict[str, PeerState]:
        """The peers actually configured: public key -> state."""
        ...

    async def teardown(self) -> None:
        """Remove the interface and everything on it; safe to call more than once."""
        ...


class BackendUnavailable(Exception):
    """The requested backend cannot run here (not implemented, missing tool, no rights)."""


def apply_changes(
    peers: dict[str, PeerState], changes: Iterable[PeerChange]
) -> dict[str, PeerState]:
    """The peer table after ``changes``, as WireGuard itself would end up (a new dict).

    Adding a key that exists replaces it; updating or removing a missing key is a no-op.
    """
    result = dict(peers)
    for change in changes:
        if isinstance(change, AddPeer):
            result[change.public_key] = PeerState(change.allowed_ips, change.endpoint)
        elif isinstance(change, UpdatePeer):
            current = result.get(change.public_key)
            if current is None:
                continue
            result[change.public_key] = PeerState(
                change.allowed_ips if change.allowed_ips is not None else current.allowed_ips,
                change.endpoint if change.endpoint is not None else current.endpoint,
            )
        else:
            result.pop(change.public_key, None)
    return result


def describe_change(change: PeerChange) -> str:
    """A one-line description for logs (public keys are public; nothing secret here)."""
    if isinstance(change, AddPeer):
        ips = ",".join(sorted(change.allowed_ips))
        return f"add peer {change.public_key} allowed_ips={ips} endpoint={change.endpoint}"
    if isinstance(change, UpdatePeer):
        parts = [f"update peer {change.public_key}"]
        if change.allowed_ips is not None:
            parts.append(f"allowed_ips={','.join(sorted(change.allowed_ips))}")
        if change.endpoint is not None:
            parts.append(f"endpoint={change.endpoint}")
        return " ".join(parts)
    return f"remove peer {change.public_key}"


class BackendName(StrEnum):
    """The ``--backend`` choices (here, not in the factory, so that
    :mod:`wiremesh.agent.wireguard.prereq` can name them without importing the backends)."""

    MEMORY = "memory"
    WIREGUARD_GO = "wireguard-go"
    KERNEL = "kernel"
    AUTO = "auto"
