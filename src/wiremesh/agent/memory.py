"""The in-memory WireGuard backend: state in a dict, every change logged.

For tests and for running the agent without touching the network (``--backend memory``).
It keeps the contract of :mod:`wiremesh.agent.backend` and needs nothing else.
"""

from __future__ import annotations

import logging

from wiremesh.agent.backend import (
    DEFAULT_LISTEN_PORT,
    DeviceConfig,
    PeerChange,
    PeerState,
    apply_changes,
    describe_change,
)

__all__ = ["MemoryBackend"]

logger = logging.getLogger("wiremesh.agent.backend")
"""The name it logged under before it had its own module; log filters keep working."""


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
