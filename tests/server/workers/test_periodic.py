"""Background loops: a failing run is logged with its traceback and the loop goes on."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.mail.helpers import make_device, make_site, session_row
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail import alerts
from wiremesh.server.mail.alerts import OfflineAlertChecker
from wiremesh.server.mail.models import MailOutbox
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


async def test_the_offline_checker_runs_in_the_background(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    site = await make_site(session)
    now = utcnow()
    await alerts.put_alert_settings(
        session,
        site.org.id,
        enabled=True,
        offline_threshold_seconds=0,
        now=now - timedelta(hours=1),
    )
    device = await make_device(session, site, "p1")
    await session_row(
        session,
        device,
        connected_at=now - timedelta(minutes=30),
        ended_at=now - timedelta(minutes=20),
        status="timeout",
    )
    await session.commit()
    waiting = OfflineAlertChecker(sessionmaker, settings, interval=0.02)
    await waiting.start()  # just started: its grace period has not passed yet
    try:
        await asyncio.sleep(0.1)
    finally:
        await waiting.stop()
    async with sessionmaker() as db:
        assert (await db.execute(select(MailOutbox))).first() is None

    checker = OfflineAlertChecker(sessionmaker, settings, interval=0.02, startup_grace=0)
    await checker.start()
    try:
        for _ in range(100):
            async with sessionmaker() as db:
                sent = list((await db.execute(select(MailOutbox))).scalars())
            if sent:
                break
            await asyncio.sleep(0.02)
    finally:
        await checker.stop()
    assert sorted(m.to for m in sent) == site.admins
    assert {m.kind for m in sent} == {"device_offline"}
