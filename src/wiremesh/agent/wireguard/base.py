"""What the kernel and wireguard-go backends share: configuration through ``wg`` and ``ip``.

Both implementations are configured by the same tools: ``wg`` talks netlink to the
kernel module and the UAPI socket to wireguard-go, so once the interface exists the
work is identical. A subclass only creates and removes the interface.

- ``setup`` sets the private key (on standard input), the listen port, the address
  (virtual IP with the network's prefix, so the whole network routes through the
  interface), the MTU when one is given, and brings the link up. Called again, it changes
  only what differs: a new key (rotation), a new port, a new address. Peers are kept.
- ``apply`` runs the plan as one ``wg set``: only the peers named are touched, a peer's
  session survives an update, new peers get a persistent keepalive.
- ``peers`` reads ``wg show <iface> dump`` but reports, for each peer, the endpoint this
  backend last *set*. WireGuard replaces a peer's endpoint by the address its packets
  last came from (roaming); reporting that would make the planner "correct" it back to
  the server's view after every change. Peers this process never configured (an
  interface taken over after a crash) report what WireGuard has.
- All calls are serialised by one lock (the session loop and the key watcher share it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from abc import ABC, abstractmethod
from typing import ClassVar, Final

from wiremesh.agent.backend import (
    DEFAULT_INTERFACE,
    AddPeer,
    BackendUnavailable,
    DeviceConfig,
    PeerChange,
    PeerState,
    apply_changes,
    describe_change,
)
from wiremesh.agent.wireguard.commands import CommandError, CommandRunner, SubprocessRunner
from wiremesh.agent.wireguard.wgtools import (
    PERSISTENT_KEEPALIVE,
    DumpError,
    ip_link_mtu,
    link_kind,
    parse_dump,
    validate_interface_name,
    wg_set_device,
    wg_set_peers,
)

__all__ = ["NO_SUCH_DEVICE", "ToolsBackend"]

logger = logging.getLogger("wiremesh.agent.wireguard")

NO_SUCH_DEVICE: Final = ("does not exist", "Cannot find device", "No such device")
"""How ``ip`` says an interface is not there."""


def _missing(error: CommandError) -> bool:
    return any(text in error.stderr for text in NO_SUCH_DEVICE)


class ToolsBackend(ABC):
    """A real WireGuard interface configured with ``wg`` and ``ip``; see the module doc."""

    name: ClassVar[str]
    """The backend's name in messages (``kernel``, ``wireguard-go``)."""

    def __init__(
        self,
        interface: str = DEFAULT_INTERFACE,
        *,
        runner: CommandRunner | None = None,
        keepalive: int = PERSISTENT_KEEPALIVE,
        mtu: int | None = None,
    ) -> None:
        self.interface = validate_interface_name(interface)
        self.runner: CommandRunner = runner or SubprocessRunner()
        self.keepalive = keepalive
        self.mtu = mtu
        """The interface's MTU; ``None`` leaves the implementation's (1420 for both)."""
        if mtu is not None:
            ip_link_mtu(self.interface, mtu)  # refuse a bad value before anything runs
        self._lock = asyncio.Lock()
        self._created = False
        self._device: DeviceConfig | None = None
        self._listen_port = 0
        self._configured: dict[str, PeerState] = {}
        """The peers as this backend set them (endpoint = the last one set), by key."""

    # ------------------------------------------------------------------ the Protocol

    @property
    def listen_port(self) -> int:
        return self._listen_port

    async def setup(self, device: DeviceConfig) -> None:
        async with self._lock:
            if not self._created:
                adopted = await self._create()
                self._created = True
                try:
                    await self._configure(device, None, adopted=adopted)
                except BaseException:
                    try:
                        await self._remove()
                    except Exception as exc:
                        logger.error(
                            "%s: could not remove %s again: %s", self.name, self.interface, exc
                        )
                    raise
                logger.info(
                    "%s: %s is up, address %s, listen port %d",
                    self.name,
                    self.interface,
                    device.address,
                    self._listen_port,
                )
            else:
                assert self._device is not None
                await self._configure(device, self._device, adopted=False)
            self._device = device

    async def apply(self, changes: list[PeerChange]) -> None:
        async with self._lock:
            self._require_up()
            if not changes:
                return
            await self.runner.run(wg_set_peers(self.interface, changes, keepalive=self.keepalive))
            self._configured = apply_changes(self._configured, changes)
            for change in changes:
                logger.info("%s %s: %s", self.name, self.interface, describe_change(change))

    async def peers(self) -> dict[str, PeerState]:
        async with self._lock:
            self._require_up()
            result = await self.runner.run(["wg", "show", self.interface, "dump"])
            try:
                dump = parse_dump(result.stdout)
            except DumpError as exc:
                raise BackendUnavailable(
                    f"cannot read `wg show {self.interface} dump`: {exc}"
                ) from None
            peers: dict[str, PeerState] = {}
            for key, peer in dump.peers.items():
                ours = self._configured.get(key)
                endpoint = ours.endpoint if ours is not None and ours.endpoint else peer.endpoint
                peers[key] = PeerState(
                    peer.allowed_ips,
                    endpoint,
                    float(peer.latest_handshake),
                    peer.transfer_rx,
                    peer.transfer_tx,
                    peer.endpoint,
                )
            return peers

    async def teardown(self) -> None:
        async with self._lock:
            if not self._created:
                return
            count = len(self._configured)
            await self._remove()
            logger.info("%s: %s removed (%d peers)", self.name, self.interface, count)

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    async def _create(self) -> bool:
        """Create the interface (it then exists, down, without address); True if an
        existing WireGuard interface was taken over instead."""

    @abstractmethod
    async def _destroy(self) -> None:
        """Remove the interface (and whatever runs it); tolerate that it is gone."""

    async def _remove(self) -> None:
        try:
            await self._destroy()
        finally:
            self._created = False
            self._device = None
            self._configured = {}
            self._listen_port = 0

    async def _link_kind(self) -> str | None:
        """The kind of the link named like our interface (``None``: there is none)."""
        try:
            result = await self.runner.run(
                ["ip", "-details", "-json", "link", "show", "dev", self.interface]
            )
        except CommandError as exc:
            if _missing(exc):
                return None
            raise
        try:
            return link_kind(result.stdout)
        except DumpError as exc:
            raise BackendUnavailable(
                f"cannot read `ip link show {self.interface}`: {exc}"
            ) from None

    async def _delete_link(self) -> None:
        try:
            await self.runner.run(["ip", "link", "delete", "dev", self.interface])
        except CommandError as exc:
            if not _missing(exc):
                raise

    async def _restore(self) -> None:
        """Configure a re-created interface as it was: device first, then every peer."""
        assert self._device is not None
        device = self._device
        if self._listen_port:  # the port peers know, even if it was chosen at random
            device = dataclasses.replace(device, listen_port=self._listen_port)
        await self._configure(device, None, adopted=False)
        if self._configured:
            changes: list[PeerChange] = [
                AddPeer(key, state.allowed_ips, state.endpoint)
                for key, state in sorted(self._configured.items())
            ]
            await self.runner.run(wg_set_peers(self.interface, changes, keepalive=self.keepalive))

    def _require_up(self) -> None:
        if not self._created:
            raise RuntimeError(f"{self.name}: {self.interface} is not set up")

    # ------------------------------------------------------------------ internals

    async def _configure(
        self, device: DeviceConfig, previous: DeviceConfig | None, *, adopted: bool
    ) -> None:
        """Make the interface match ``device``; with a ``previous`` one, only the changes."""
        new_key = previous is None or previous.private_key != device.private_key
        port: int | None = None
        if previous is None or device.listen_port not in (0, self._listen_port):
            port = device.listen_port
        if new_key or port is not None:
            await self.runner.run(
                wg_set_device(self.interface, private_key=new_key, listen_port=port),
                stdin=device.private_key + "\n" if new_key else None,
            )
        if previous is not None and new_key:
            logger.info("%s: %s has a new private key", self.name, self.interface)
        if port == 0:
            shown = await self.runner.run(["wg", "show", self.interface, "listen-port"])
            try:
                self._listen_port = int(shown.stdout.strip())
            except ValueError:
                raise BackendUnavailable(
                    f"`wg show {self.interface} listen-port` printed no port"
                ) from None
        elif port is not None:
            self._listen_port = port
        address = str(device.address)
        if previous is None:
            if adopted:  # whatever address the old run left
                await self.runner.run(["ip", "address", "flush", "dev", self.interface])
            await self.runner.run(["ip", "address", "add", address, "dev", self.interface])
            if self.mtu is not None:
                await self.runner.run(ip_link_mtu(self.interface, self.mtu))
            await self.runner.run(["ip", "link", "set", "dev", self.interface, "up"])
        elif previous.address != device.address:
            await self.runner.run(
                ["ip", "address", "del", str(previous.address), "dev", self.interface]
            )
            await self.runner.run(["ip", "address", "add", address, "dev", self.interface])
            logger.info("%s: %s now has address %s", self.name, self.interface, address)
