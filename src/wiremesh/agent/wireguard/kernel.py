"""The kernel backend: ``ip link add dev <iface> type wireguard``, configured with ``wg``.

The fastest implementation (Linux 5.6 and later have it built in; older kernels need the
``wireguard`` module). Where the kernel has no WireGuard, creating the link fails with
"Unknown device type"; that becomes a :class:`BackendUnavailable` saying so and pointing
to ``--backend wireguard-go``.

A kernel interface outlives the process that made it. An agent that died without
tearing down leaves it behind; the next start takes it over (same name, kind
``wireguard``) instead of failing, so a restart does not even drop the peers' sessions.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Final

from wiremesh.agent.backend import BackendUnavailable
from wiremesh.agent.wireguard.base import ToolsBackend
from wiremesh.agent.wireguard.commands import CommandError

__all__ = ["NO_KERNEL_MODULE", "KernelBackend"]

logger = logging.getLogger("wiremesh.agent.wireguard")

NO_KERNEL_MODULE: Final = (
    "this kernel has no WireGuard support (the `wireguard` module is neither built in nor "
    "loadable); install it (Linux 5.6+ ships it; older Debian/Ubuntu: `apt install "
    "wireguard-dkms`) or run the userspace implementation with --backend wireguard-go"
)

_NOT_SUPPORTED: Final = ("Unknown device type", "Operation not supported", "not supported")


class KernelBackend(ToolsBackend):
    """WireGuard in the Linux kernel."""

    name: ClassVar[str] = "kernel"

    async def _create(self) -> bool:
        kind = await self._link_kind()
        if kind == "wireguard":
            logger.warning(
                "kernel: %s exists already (left by an earlier run?): taking it over",
                self.interface,
            )
            return True
        if kind is not None:
            raise BackendUnavailable(
                f"an interface named {self.interface} exists and is not a WireGuard interface "
                f"(kind {kind or 'none'}); choose another one with --interface"
            )
        try:
            await self.runner.run(["ip", "link", "add", "dev", self.interface, "type", "wireguard"])
        except CommandError as exc:
            if any(text in exc.stderr for text in _NOT_SUPPORTED):
                raise BackendUnavailable(
                    f"{NO_KERNEL_MODULE} (`ip link add dev {self.interface} type wireguard`: "
                    f"{exc.stderr})"
                ) from None
            raise
        return False

    async def _destroy(self) -> None:
        await self._delete_link()
