"""Background loops: a failing run is logged with its traceback and the loop goes on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wiremesh.server.workers.periodic import PeriodicWorker


class Flaky(PeriodicWorker):
    name = "flaky"

    def __init__(self) -> None:
        super().__init__(0.01, stop_timeout=1)
        self.runs = 0

    async def run_once(self) -> int:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("first run breaks")
        return 0


async def test_a_failed_run_is_logged_and_the_loop_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Flaky()
    with caplog.at_level(logging.ERROR, logger="wiremesh"):
        await worker.start()
        for _ in range(100):
            if worker.runs >= 3:
                break
            await asyncio.sleep(0.01)
        await worker.stop()
    assert worker.runs >= 3
    assert not worker.running
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "flaky" in record.getMessage()
    assert record.exc_info is not None


async def test_stop_cancels_a_run_that_hangs() -> None:
    class Hanging(PeriodicWorker):
        async def run_once(self) -> int:
            await asyncio.sleep(3600)
            return 0

    worker = Hanging(0.01, stop_timeout=0.05)
    await worker.start()
    await asyncio.sleep(0.02)
    await worker.stop()
    assert not worker.running
