"""Retention: ended connection rows and finished mails older than their retention go, in
batches (a mail's body may hold a link with a token: it is kept no longer than needed)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.db.batches import delete_in_batches
from wiremesh.server.mail import repository as mail_repository
from wiremesh.server.presence import repository
from wiremesh.server.workers.periodic import PeriodicWorker

logger = logging.getLogger("wiremesh.cleanup")


async def delete_old_connections(
    sessionmaker: async_sessionmaker[AsyncSession], older_than: timedelta, batch_size: int
) -> tuple[int, datetime]:
    """Delete ended rows that ended before now - ``older_than``; one transaction per batch,
    so a large backlog never holds a long lock. Live rows are never touched."""
    cutoff = utcnow() - older_than

    async def one_batch(session: AsyncSession) -> int:
        return await repository.delete_ended_before(session, cutoff, batch_size)

    return await delete_in_batches(sessionmaker, one_batch, batch_size), cutoff


async def delete_old_mail(
    sessionmaker: async_sessionmaker[AsyncSession], older_than: timedelta, batch_size: int
) -> tuple[int, datetime]:
    """Delete sent and failed mails finished before now - ``older_than``; queued and sending
    mails are never touched."""
    cutoff = utcnow() - older_than

    async def one_batch(session: AsyncSession) -> int:
        return await mail_repository.purge_finished(session, cutoff, batch_size)

    return await delete_in_batches(sessionmaker, one_batch, batch_size), cutoff


class CleanupWorker(PeriodicWorker):
    """Runs the retention cleanup every ``cleanup_interval`` seconds inside the server."""

    name = "connection-cleanup"

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(settings.cleanup_interval)
        self.settings = settings
        self.sessionmaker = sessionmaker

    async def run_once(self) -> int:
        deleted, cutoff = await delete_old_connections(
            self.sessionmaker,
            timedelta(days=self.settings.connection_retention_days),
            self.settings.cleanup_batch_size,
        )
        if deleted:
            logger.info("deleted %d connection rows that ended before %s", deleted, cutoff)
        mails, mail_cutoff = await delete_old_mail(
            self.sessionmaker,
            timedelta(days=self.settings.mail_retention_days),
            self.settings.cleanup_batch_size,
        )
        if mails:
            logger.info("deleted %d sent or failed mails finished before %s", mails, mail_cutoff)
        return deleted + mails
