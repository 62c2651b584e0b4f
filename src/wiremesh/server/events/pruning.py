"""Events are for replicas catching up, not history: they are pruned after a retention."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.db.batches import delete_in_batches
from wiremesh.server.events import repository
from wiremesh.server.workers.periodic import PeriodicWorker

logger = logging.getLogger("wiremesh.events")


class EventPruner(PeriodicWorker):
    """Deletes events older than ``event_retention_hours``, a batch per transaction."""

    name = "event-pruning"

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(settings.cleanup_interval)
        self.settings = settings
        self.sessionmaker = sessionmaker

    async def run_once(self) -> int:
        cutoff = utcnow() - timedelta(hours=self.settings.event_retention_hours)
        batch = self.settings.cleanup_batch_size

        async def one_batch(session: AsyncSession) -> int:
            return await repository.prune_events_before(session, cutoff, batch)

        total = await delete_in_batches(self.sessionmaker, one_batch, batch)
        if total:
            logger.info("pruned %d events older than %s", total, cutoff)
        return total
