"""Event-loop lag: how late a short sleep wakes up. The figure that says whether the one
thread serving every agent keeps up."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

SAMPLE_EVERY = 0.1
WINDOW = 600  # the last minute of samples


class LoopLagMonitor:
    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=WINDOW)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wiremesh-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(SAMPLE_EVERY)
            self.samples.append(max(0.0, loop.time() - started - SAMPLE_EVERY))

    def percentile(self, fraction: float) -> float:
        """The lag (seconds) below which ``fraction`` of recent samples fall; 0 with none."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, int(fraction * len(ordered)))
        return ordered[index]
