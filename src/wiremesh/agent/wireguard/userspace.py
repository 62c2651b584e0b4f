"""The userspace backend: ``wireguard-go`` as a supervised child, configured with ``wg``.

Why a foreground child (``wireguard-go -f <iface>``) and not the daemon mode: the agent
then owns the process. It knows its pid, reads its log lines into the agent's log, sees
the moment it dies, and stops it in order on exit (SIGTERM: wireguard-go removes the
interface and its UAPI socket itself). The child runs in its own session, so a Ctrl-C
meant for the agent does not kill it under the agent's feet, and it gets SIGTERM when
the agent dies (parent-death signal), so even a SIGKILL-ed agent leaves nothing behind.

Why ``wg`` and not the UAPI protocol spoken directly: the same commands then configure
the kernel backend, ``wg`` is the reference encoder of that protocol, and it is what an
operator types to inspect the interface. A change is one ``wg set``: a process start
per change batch, not per peer.

If wireguard-go exits while the agent runs (a crash, an OOM kill, someone deleting the
interface), the backend logs it and starts it again after a short delay (growing while
it keeps failing), then restores the device and every peer it had configured.

The UAPI socket is ``/var/run/wireguard/<iface>.sock`` (fixed in wireguard-go and
``wg``). It is per file system, not per network namespace: two network namespaces that
share a file system cannot both run an interface of the same name. The backend detects
that case (the socket answers, yet this namespace has no such interface) and says so.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Final

from wiremesh.agent.backend import DEFAULT_INTERFACE, BackendUnavailable
from wiremesh.agent.wireguard.base import ToolsBackend
from wiremesh.agent.wireguard.commands import CommandRunner
from wiremesh.agent.wireguard.wgtools import PERSISTENT_KEEPALIVE

__all__ = ["UAPI_SOCKET_DIR", "WireGuardGoBackend"]

logger = logging.getLogger("wiremesh.agent.wireguard")

UAPI_SOCKET_DIR: Final = Path("/var/run/wireguard")
START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 5.0
RESTART_DELAYS: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before restarting a wireguard-go that died; the last one repeats."""
STABLE_AFTER: Final = 30.0
"""A child that ran this long counts as healthy: the next crash restarts quickly again."""
OUTPUT_LINES_KEPT: Final = 20
EXPECTED_ERRORS: Final = ("no known endpoint for peer",)
"""wireguard-go's errors that say nothing is wrong: traffic for a peer whose address is not
known yet (one that has not been online since the agent started). Logged at debug level."""


class WireGuardGoBackend(ToolsBackend):
    """WireGuard in userspace: one ``wireguard-go`` child per interface."""

    name: ClassVar[str] = "wireguard-go"

    def __init__(
        self,
        interface: str = DEFAULT_INTERFACE,
        *,
        runner: CommandRunner | None = None,
        keepalive: int = PERSISTENT_KEEPALIVE,
        mtu: int | None = None,
        binary: str = "wireguard-go",
        socket_dir: Path = UAPI_SOCKET_DIR,
        start_timeout: float = START_TIMEOUT,
        restart_delays: tuple[float, ...] = RESTART_DELAYS,
    ) -> None:
        super().__init__(interface, runner=runner, keepalive=keepalive, mtu=mtu)
        self.binary = binary
        self.socket_path = socket_dir / f"{self.interface}.sock"
        self.start_timeout = start_timeout
        self.restart_delays = restart_delays or RESTART_DELAYS
        self.restarts = 0
        """How often the child was started again after dying (for logs and tests)."""
        self._child: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """The running wireguard-go's process id."""
        child = self._child
        return child.pid if child is not None and child.returncode is None else None

    # ------------------------------------------------------------------ create / destroy

    async def _create(self) -> bool:
        self._stopping = False
        kind = await self._link_kind()
        if kind == "tun" and self.socket_path.is_socket():
            logger.warning(
                "wireguard-go: %s exists already (a wireguard-go left by an earlier run?): "
                "replacing it",
                self.interface,
            )
            await self._delete_link()  # wireguard-go exits when its interface goes
            await self._wait_for(lambda: not self.socket_path.exists(), "the old socket to go")
        elif kind == "wireguard":
            raise BackendUnavailable(
                f"{self.interface} exists as a kernel WireGuard interface; use --backend kernel, "
                f"or remove it first (`ip link delete dev {self.interface}`)"
            )
        elif kind is not None:
            raise BackendUnavailable(
                f"an interface named {self.interface} exists and is not a WireGuard interface "
                f"(kind {kind or 'none'}); choose another one with --interface"
            )
        await self._clear_stale_socket()
        await self._start()
        return False

    async def _destroy(self) -> None:
        self._stopping = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self._stop_child()

    # ------------------------------------------------------------------ the child

    async def _start(self) -> None:
        env = {
            # What wireguard-go's own daemon mode sets for its child: run in the foreground
            # without the "your kernel has WireGuard" banner (auto picks the kernel then).
            "WG_PROCESS_FOREGROUND": "1",
            "LOG_LEVEL": "verbose" if logger.isEnabledFor(logging.DEBUG) else "error",
        }
        self._output.clear()
        child = await self.runner.start([self.binary, "-f", self.interface], env=env)
        self._child = child
        self._started_at = time.monotonic()
        self._reader = asyncio.create_task(self._read_output(child))
        try:
            await self._wait_for(
                lambda: self.socket_path.is_socket(), f"{self.interface} to come up", child
            )
        except BaseException:
            await self._stop_child()
            raise
        logger.info("wireguard-go: started for %s (pid %d)", self.interface, child.pid)
        self._watcher = asyncio.create_task(self._watch(child))

    async def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await child.wait()
            except TimeoutError:
                logger.warning("wireguard-go: no exit %g s after SIGTERM: killing it", STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                async with asyncio.timeout(1.0):
                    await reader
            except TimeoutError:
                reader.cancel()

    async def _read_output(self, child: asyncio.subprocess.Process) -> None:
        """Forward wireguard-go's log lines into the agent's log, keep the last few."""
        assert child.stdout is not None
        while line := await child.stdout.readline():
            text = line.decode("utf-8", errors="replace").rstrip()[:500]
            if not text:
                continue
            if any(expected in text for expected in EXPECTED_ERRORS):
                logger.debug("wireguard-go[%s]: %s", self.interface, text)
                continue
            self._output.append(text)
            logger.info("wireguard-go[%s]: %s", self.interface, text)

    def _last_output(self) -> str:
        return " | ".join(self._output) or "no output"

    async def _wait_for(
        self,
        condition: Callable[[], bool],
        what: str,
        child: asyncio.subprocess.Process | None = None,
    ) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not condition():
            if child is not None and child.returncode is not None:
                if self._reader is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await asyncio.shield(self._reader)
                raise BackendUnavailable(
                    f"wireguard-go exited with status {child.returncode} before "
                    f"{self.interface} was up: {self._last_output()}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"wireguard-go: gave up waiting for {what} after {self.start_timeout:g} s"
                )
            await asyncio.sleep(0.01)

    async def _clear_stale_socket(self) -> None:
        """Remove a socket no process answers on; refuse one that answers (see module doc)."""
        if not self.socket_path.exists():
            return
        if await _answers(self.socket_path):
            raise BackendUnavailable(
                f"a wireguard-go already serves {self.socket_path} but this network namespace "
                f"has no interface {self.interface}: another namespace or container sharing "
                "this file system uses the name; choose another one with --interface"
            )
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _watch(self, child: asyncio.subprocess.Process) -> None:
        """Start wireguard-go again if it dies while the agent runs; restore its state."""
        status = await child.wait()
        if self._stopping or child is not self._child:
            return
        ran_for = time.monotonic() - self._started_at
        attempt = 0 if ran_for >= STABLE_AFTER else min(self.restarts, len(self.restart_delays))
        logger.error(
            "wireguard-go for %s exited unexpectedly with status %s after %.0f s (%s); "
            "restarting it",
            self.interface,
            status,
            ran_for,
            self._last_output(),
        )
        while not self._stopping:
            delay = self.restart_delays[min(attempt, len(self.restart_delays) - 1)]
            await asyncio.sleep(delay)
            attempt += 1
            async with self._lock:
                if self._stopping or not self._created:
                    return
                try:
                    self._child = None
                    if await self._link_kind() == "tun":
                        await self._delete_link()
                    await self._clear_stale_socket()
                    await self._start()
                    self.restarts += 1
                    await self._restore()
                except (OSError, BackendUnavailable) as exc:
                    logger.error(
                        "wireguard-go for %s could not be restarted: %s; trying again in %g s",
                        self.interface,
                        exc,
                        self.restart_delays[min(attempt, len(self.restart_delays) - 1)],
                    )
                    await self._stop_child()
                    continue
                logger.info(
                    "wireguard-go: %s restored with %d peers", self.interface, len(self._configured)
                )
                return


async def _answers(path: Path) -> bool:
    """Whether a process accepts connections on the Unix socket at ``path``."""
    try:
        async with asyncio.timeout(1.0):
            _reader, writer = await asyncio.open_unix_connection(str(path))
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
