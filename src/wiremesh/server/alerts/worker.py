"""The offline-alert checker: the periodic job behind alert thresholds."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.alerts.service import check_offline_devices
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.workers.periodic import PeriodicWorker

logger = logging.getLogger("wiremesh.server.alerts")

DEFAULT_CHECK_INTERVAL = 30.0


class OfflineAlertChecker(PeriodicWorker):
    """Runs ``check_offline_devices`` every ``interval`` seconds; start/stop from the lifespan."""

    name = "offline-alerts"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        interval: float = DEFAULT_CHECK_INTERVAL,
        startup_grace: float | None = None,
    ) -> None:
        super().__init__(interval)
        self.sessionmaker = sessionmaker
        self.settings = settings
        # Time for agents to reconnect after this replica starts: two heartbeat timeouts.
        self.startup_grace = timedelta(
            seconds=startup_grace if startup_grace is not None else 2 * settings.heartbeat_timeout
        )
        self.started_at: datetime | None = None

    async def start(self) -> None:
        if self.started_at is None:
            self.started_at = utcnow()
        await super().start()

    async def run_once(self, now: datetime | None = None) -> int:
        not_before = self.started_at + self.startup_grace if self.started_at else None
        async with self.sessionmaker() as session:
            alerted = await check_offline_devices(session, now, not_before=not_before)
            await session.commit()
        if alerted:
            logger.info("queued offline alerts for %d device(s)", alerted)
        return alerted
