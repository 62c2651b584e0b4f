"""A background job that runs every few seconds: started and stopped by the app's lifespan.

A failed run is logged with its traceback and the loop goes on: a job never dies silently
and never swallows errors without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

logger = logging.getLogger("wiremesh.server.workers")


class PeriodicWorker:
    """Calls ``run_once()`` every ``interval`` seconds, at once again while it reports backlog."""

    name = "worker"

    def __init__(self, interval: float, *, stop_timeout: float = 10.0) -> None:
        self.interval = interval
        self.stop_timeout = stop_timeout
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._backlog = False
        self.on_run: Callable[[str, bool], None] | None = None
        """Told the worker's name and whether each run succeeded (the app counts runs)."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run_once(self) -> int:
        raise NotImplementedError

    async def start(self) -> None:
        if self.running:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name=f"wiremesh-{self.name}")

    async def stop(self) -> None:
        """Finish the current run (up to ``stop_timeout`` seconds), then stop."""
        task = self._task
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.stop_timeout)
        except TimeoutError:
            logger.warning(
                "%s: still busy after %.0fs; cancelling it", self.name, self.stop_timeout
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._task = None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self._backlog = False
            ok = False
            try:
                await self.run_once()
                ok = True
            except Exception:
                logger.exception(
                    "%s: a run failed; trying again in %.1fs", self.name, self.interval
                )
            if self.on_run is not None:
                self.on_run(self.name, ok)
            if self._backlog:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval)
