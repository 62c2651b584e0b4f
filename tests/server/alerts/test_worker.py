"""The offline-alert checker: the periodic job that reports devices offline past a threshold."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.mail.helpers import make_device, make_site, session_row
from wiremesh.server.alerts import service as alerts
from wiremesh.server.alerts.worker import OfflineAlertChecker
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail.models import MailOutbox


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
