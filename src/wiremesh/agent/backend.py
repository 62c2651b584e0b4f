"""The narrow interface between the agent and WireGuard, and the in-memory fake.

The session loop only ever talks to a :class:`WireGuardBackend`: it configures the
interface once (:meth:`~WireGuardBackend.setup`), reads what is configured
(:meth:`~WireGuardBackend.peers`), applies the changes computed by
:func:`wiremesh.agent.reconcile.plan` (:meth:`~WireGuardBackend.apply`) and removes the
interface on exit (:meth:`~WireGuardBackend.teardown`). Real backends (kernel, wireguard-go)
implement the same Protocol; :class:`MemoryBackend` keeps the state in a dict and logs
every change, for tests and for running the agent without touching the network.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_INTERFACE",
    "DEFAULT_LISTEN_PORT",
    "AddPeer",
    "BackendName",
    "BackendUnavailable",
    "DeviceConfig",
    "MemoryBackend",
    "PeerChange",
    "PeerState",
    "RemovePeer",
    "UpdatePeer",
    "WireGuardBackend",
    "apply_changes",
    "create_backend",
]

logger = logging.getLogger("wiremesh.agent.backend")

DEFAULT_LISTEN_PORT: Final = 51820
"""WireGuard's customary UDP port."""

DEFAULT_INTERFACE: Final = "wm0"
"""The WireGuard interface the real backends create."""

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


class MemoryBackend:
    """A WireGuard stand-in that keeps its state in memory and logs every change."""

    def __init__(self) -> None:
        self.device: DeviceConfig | None = None
        self.state: dict[str, PeerState] = {}
        self.applied: list[PeerChange] = []
        """Every change ever applied, in order (for tests)."""
        self.torn_down = False
        self._listen_port = 0

    @property
    def listen_port(self) -> int:
        return self._listen_port

    async def setup(self, device: DeviceConfig) -> None:
        self.device = device
        self.torn_down = False
        self._listen_port = device.listen_port or DEFAULT_LISTEN_PORT
        logger.info(
            "memory backend: interface up, address %s, listen port %d",
            device.address,
            self._listen_port,
        )

    async def apply(self, changes: list[PeerChange]) -> None:
        if self.device is None:
            raise RuntimeError("apply() before setup()")
        for change in changes:
            logger.info("memory backend: %s", describe_change(change))
        self.state = apply_changes(self.state, changes)
        self.applied.extend(changes)

    async def peers(self) -> dict[str, PeerState]:
        return dict(self.state)

    async def teardown(self) -> None:
        if self.torn_down:
            return
        self.torn_down = True
        count = len(self.state)
        self.state = {}
        self.device = None
        logger.info("memory backend: interface down (%d peers removed)", count)


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
    """The ``--backend`` choices."""

    MEMORY = "memory"
    WIREGUARD_GO = "wireguard-go"
    KERNEL = "kernel"
    AUTO = "auto"


BackendFactory = Callable[[str], WireGuardBackend]
"""Builds a backend for the named interface."""


def _memory(interface: str) -> WireGuardBackend:
    return MemoryBackend()


# The real backends are imported when asked for: they import this module, and the memory
# backend (tests, the session loop's own tests) never needs them.


def _kernel(interface: str) -> WireGuardBackend:
    from wiremesh.agent.wireguard.kernel import KernelBackend

    return KernelBackend(interface)


def _wireguard_go(interface: str) -> WireGuardBackend:
    from wiremesh.agent.wireguard.userspace import WireGuardGoBackend

    return WireGuardGoBackend(interface)


_FACTORIES: dict[BackendName, BackendFactory] = {
    BackendName.MEMORY: _memory,
    BackendName.KERNEL: _kernel,
    BackendName.WIREGUARD_GO: _wireguard_go,
}
"""Implemented backends. ``auto`` is not one: it picks the kernel when the kernel has
WireGuard, else wireguard-go (:func:`wiremesh.agent.wireguard.prereq.resolve_auto`), never
the memory backend, which carries no traffic."""


def create_backend(
    name: BackendName | str, *, interface: str = DEFAULT_INTERFACE
) -> WireGuardBackend:
    """Build the named backend for ``interface``, or raise :class:`BackendUnavailable` saying
    why not (``ValueError`` for an unusable interface name).

    Nothing is touched yet: the interface is created by ``setup``.
    """
    try:
        wanted = BackendName(name)
    except ValueError:
        choices = ", ".join(member.value for member in BackendName)
        raise BackendUnavailable(f"unknown backend {name!r} (choose one of {choices})") from None
    if wanted is BackendName.AUTO:
        from wiremesh.agent.wireguard.prereq import resolve_auto

        wanted = resolve_auto()
    factory = _FACTORIES.get(wanted)
    if factory is None:
        raise BackendUnavailable(f"the {wanted.value} backend is not implemented")
    return factory(interface)
