"""A running agent follows its private key file, so ``rotate-key`` needs no restart.

Design: the agent polls the key file ten times a second (``stat``: inode, mtime, size; a
few microseconds each) rather than waiting for SIGHUP. ``rotate-key`` then works without
knowing the agent's pid or having the right to signal it, and a key restored from a backup
is picked up the same way. When the file changes, the agent loads the enrollment and the
key and checks that they belong together (``rotate-key`` writes the key first, then the
state file: between the two they differ and the agent waits for the next poll). Then it
re-applies ``setup`` with the new key, which for the real backends is one ``wg set
<iface> private-key /dev/stdin``: the address, port and peers stay. Then ``on_rotated``
runs: the agent starts a handshake with every peer (see ``AgentRunner.rotated``).

Why the poll is that quick: the server tells the peers the new key as soon as it accepts
it, before ``rotate-key`` has written the file. A peer whose handshake reaches this device
while it still has the old key is not answered and retries only after WireGuard's 5 s
``REKEY_TIMEOUT``; the handshake this device starts once it has the new key ends that
wait. What remains of the gap is the time from the server's answer to the new key on the
interface: the file written, the next poll (at most 0.1 s), ``wg set``, a round trip.

:class:`KeyFollower` wraps the backend the session loop uses, so every later ``setup``
(the server assigning another address, say) also uses the newest key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from wiremesh.agent.backend import (
    BackendUnavailable,
    DeviceConfig,
    PeerChange,
    PeerState,
    WireGuardBackend,
)
from wiremesh.agent.state import (
    KEY_FILE,
    Enrollment,
    StateError,
    file_signature,
    load_enrollment,
    load_private_key,
)

__all__ = ["POLL_INTERVAL", "KeyFollower"]

logger = logging.getLogger("wiremesh.agent")

POLL_INTERVAL: Final = 0.1
"""See the module doc: this bounds how long peers told the new key cannot reach this device."""
MISMATCH_WARNING_AFTER: Final = 10.0
"""A key file that stays unusable this long (not a rotation in progress) is reported."""


class KeyFollower:
    """A :class:`WireGuardBackend` that keeps ``inner`` on the key stored in ``state_dir``."""

    def __init__(
        self,
        inner: WireGuardBackend,
        state_dir: Path,
        private_key: str,
        *,
        on_rotated: Callable[[Enrollment], None] | None = None,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.inner = inner
        self.state_dir = state_dir
        self.interval = interval
        self.on_rotated = on_rotated
        self.rotations = 0
        self._private_key = private_key
        self._device: DeviceConfig | None = None
        self._lock = asyncio.Lock()
        self._seen = file_signature(self._key_path)
        self._unusable_since: float | None = None
        self._warned = False

    @property
    def _key_path(self) -> Path:
        return self.state_dir / KEY_FILE

    # ------------------------------------------------------------------ the Protocol

    @property
    def listen_port(self) -> int:
        return self.inner.listen_port

    async def setup(self, device: DeviceConfig) -> None:
        async with self._lock:
            device = dataclasses.replace(device, private_key=self._private_key)
            await self.inner.setup(device)
            self._device = device

    async def apply(self, changes: list[PeerChange]) -> None:
        await self.inner.apply(changes)

    async def peers(self) -> dict[str, PeerState]:
        return await self.inner.peers()

    async def teardown(self) -> None:
        async with self._lock:
            self._device = None
            await self.inner.teardown()

    # ------------------------------------------------------------------ watching

    async def watch(self) -> None:
        """Poll the key file until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> bool:
        """One poll: True when a new key was found and put on the interface."""
        signature = file_signature(self._key_path)
        if signature == self._seen:
            return False
        try:
            enrollment = load_enrollment(self.state_dir)
            private_key = load_private_key(self.state_dir, enrollment)
        except StateError as exc:
            self._unusable(exc)
            return False
        self._unusable_since = None
        self._warned = False
        if private_key == self._private_key:
            self._seen = signature
            return False
        async with self._lock:
            if self._device is not None:
                device = dataclasses.replace(self._device, private_key=private_key)
                try:
                    await self.inner.setup(device)
                except (OSError, BackendUnavailable) as exc:
                    logger.error("could not put the new private key on WireGuard: %s", exc)
                    return False  # the signature stays unseen: tried again next poll
                self._device = device
            self._private_key = private_key
            self._seen = signature
        self.rotations += 1
        logger.info(
            "the private key changed on disk: WireGuard now uses public key %s",
            enrollment.device.public_key,
        )
        if self.on_rotated is not None:
            self.on_rotated(enrollment)
        return True

    def _unusable(self, exc: StateError) -> None:
        now = time.monotonic()
        if self._unusable_since is None:
            self._unusable_since = now
        elif not self._warned and now - self._unusable_since >= MISMATCH_WARNING_AFTER:
            self._warned = True
            logger.warning("the key file changed but cannot be used (keeping the old key): %s", exc)
