"""Choosing and building a backend: the ``--backend`` name to a :class:`WireGuardBackend`.

The only module that imports every implementation (memory, kernel, wireguard-go). They
import the contract (:mod:`wiremesh.agent.backend`), never this module, so there is no
import cycle; the session loop and its tests never import it either.
"""

from __future__ import annotations

from collections.abc import Callable

from wiremesh.agent.backend import (
    DEFAULT_INTERFACE,
    DEFAULT_KEEPALIVE,
    DEFAULT_MTU,
    BackendName,
    BackendUnavailable,
    WireGuardBackend,
)
from wiremesh.agent.memory import MemoryBackend
from wiremesh.agent.wireguard import prereq
from wiremesh.agent.wireguard.kernel import KernelBackend
from wiremesh.agent.wireguard.userspace import WireGuardGoBackend

__all__ = ["BackendFactory", "create_backend"]

BackendFactory = Callable[[str, int, int], WireGuardBackend]
"""Builds a backend for the named interface, its MTU and the peers' keepalive."""


def _memory(interface: str, mtu: int, keepalive: int) -> WireGuardBackend:
    return MemoryBackend()


def _kernel(interface: str, mtu: int, keepalive: int) -> WireGuardBackend:
    return KernelBackend(interface, mtu=mtu, keepalive=keepalive)


def _wireguard_go(interface: str, mtu: int, keepalive: int) -> WireGuardBackend:
    return WireGuardGoBackend(interface, mtu=mtu, keepalive=keepalive)


_FACTORIES: dict[BackendName, BackendFactory] = {
    BackendName.MEMORY: _memory,
    BackendName.KERNEL: _kernel,
    BackendName.WIREGUARD_GO: _wireguard_go,
}
"""Implemented backends. ``auto`` is not one: it picks the kernel when the kernel has
WireGuard, else wireguard-go (:func:`wiremesh.agent.wireguard.prereq.resolve_auto`), never
the memory backend, which carries no traffic."""


def create_backend(
    name: BackendName | str,
    *,
    interface: str = DEFAULT_INTERFACE,
    mtu: int = DEFAULT_MTU,
    keepalive: int = DEFAULT_KEEPALIVE,
) -> WireGuardBackend:
    """Build the named backend for ``interface``, or raise :class:`BackendUnavailable` saying
    why not (``ValueError`` for an unusable interface name or MTU).

    Nothing is touched yet: the interface is created by ``setup``.
    """
    try:
        wanted = BackendName(name)
    except ValueError:
        choices = ", ".join(member.value for member in BackendName)
        raise BackendUnavailable(f"unknown backend {name!r} (choose one of {choices})") from None
    if wanted is BackendName.AUTO:
        wanted = prereq.resolve_auto()
    factory = _FACTORIES.get(wanted)
    if factory is None:
        raise BackendUnavailable(f"the {wanted.value} backend is not implemented")
    return factory(interface, mtu, keepalive)
