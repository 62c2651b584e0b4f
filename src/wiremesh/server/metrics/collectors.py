"""Gauges read at scrape time: live sessions, admission, event-loop lag, the database pool
and the mail outbox. Nothing on a hot path keeps them up to date; a scrape reads the state
that is there anyway (the session registry, the pool's counters) and, for the outbox, asks
the database once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import QueuePool

from wiremesh.server.db.base import utcnow
from wiremesh.server.mail.models import MailOutbox, MailStatus
from wiremesh.server.presence.hub import PresenceHub

logger = logging.getLogger("wiremesh.metrics")

OUTBOX_QUERY_TIMEOUT = 2.0
LAG_QUANTILES = (0.5, 0.99, 1.0)


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["server_id", *labels])


class PresenceCollector(Collector):
    """Sessions, admission and event-loop lag of this replica's hub."""

    def __init__(self, hub: PresenceHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub, server = self.hub, self.hub.server_id
        live = _gauge("wiremesh_sessions_live", "Agent sessions this replica holds", [])
        live.add_metric([server], len(hub.registry))
        yield live
        per_org = _gauge(
            "wiremesh_org_sessions_live", "Agent sessions this replica holds, per org", ["org_id"]
        )
        for org_id, sessions in list(hub.registry.by_org.items()):
            per_org.add_metric([server, str(org_id)], len(sessions))
        yield per_org
        waiting = _gauge(
            "wiremesh_admission_waiting", "Authenticated sockets waiting for admission", []
        )
        waiting.add_metric([server], hub.admission_waiting)
        yield waiting
        admitting = _gauge(
            "wiremesh_admission_in_progress", "Sessions being admitted (of the limit)", []
        )
        admitting.add_metric([server], hub.admission_limit - _free_slots(hub.admission))
        yield admitting
        limit = _gauge("wiremesh_admission_limit", "Sessions admitted at once at most", [])
        limit.add_metric([server], hub.admission_limit)
        yield limit
        pending = _gauge(
            "wiremesh_heartbeat_pending_sessions", "Sessions with heartbeats not yet flushed", []
        )
        pending.add_metric([server], hub.pending_heartbeats)
        yield pending
        lag = _gauge(
            "wiremesh_event_loop_lag_seconds",
            "How late the event loop wakes a short sleep, over the last minute",
            ["quantile"],
        )
        for quantile in LAG_QUANTILES:
            lag.add_metric([server, str(quantile)], hub.loop_lag.percentile(quantile))
        yield lag


def _free_slots(semaphore: asyncio.Semaphore) -> int:
    # asyncio.Semaphore keeps its count in ``_value``; no public accessor exists.
    return int(getattr(semaphore, "_value", 0))


class PoolCollector(Collector):
    """Connections of the database pool in use (PostgreSQL's and SQLite's queue pools)."""

    def __init__(self, engine: AsyncEngine, server_id: str) -> None:
        self.engine = engine
        self.server_id = server_id

    def collect(self) -> Iterator[Metric]:
        pool = self.engine.sync_engine.pool
        if not isinstance(pool, QueuePool):
            return
        used = _gauge("wiremesh_db_pool_checked_out", "Database connections in use", [])
        used.add_metric([self.server_id], pool.checkedout())
        yield used
        size = _gauge("wiremesh_db_pool_size", "Database connections the pool keeps", [])
        size.add_metric([self.server_id], pool.size())
        yield size
        overflow = _gauge(
            "wiremesh_db_pool_overflow", "Connections beyond the pool size (negative: fewer)", []
        )
        overflow.add_metric([self.server_id], pool.overflow())
        yield overflow


@dataclass(slots=True)
class OutboxBacklog:
    waiting: int = 0
    oldest_age_seconds: float = 0.0
    known: bool = False


class OutboxCollector(Collector):
    """Mails not yet sent and the age of the oldest; ``refresh`` reads them before a scrape."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], server_id: str) -> None:
        self.sessionmaker = sessionmaker
        self.server_id = server_id
        self.backlog = OutboxBacklog()

    async def refresh(self) -> None:
        """One query; a database that does not answer leaves the outbox out of this scrape."""
        statement = select(func.count(), func.min(MailOutbox.created_at)).where(
            MailOutbox.status.in_([MailStatus.QUEUED.value, MailStatus.SENDING.value])
        )
        try:
            async with asyncio.timeout(OUTBOX_QUERY_TIMEOUT), self.sessionmaker() as session:
                waiting, oldest = (await session.execute(statement)).one()
        except Exception as exc:
            logger.warning("metrics: could not read the mail outbox (%r)", exc)
            self.backlog = OutboxBacklog()
            return
        age = 0.0 if oldest is None else max(0.0, (utcnow() - _aware(oldest)).total_seconds())
        self.backlog = OutboxBacklog(waiting=int(waiting), oldest_age_seconds=age, known=True)

    def collect(self) -> Iterator[Metric]:
        if not self.backlog.known:
            return
        depth = _gauge("wiremesh_mail_outbox_depth", "Mails queued or being sent", [])
        depth.add_metric([self.server_id], self.backlog.waiting)
        yield depth
        age = _gauge(
            "wiremesh_mail_outbox_oldest_age_seconds", "Age of the oldest mail not yet sent", []
        )
        age.add_metric([self.server_id], self.backlog.oldest_age_seconds)
        yield age


def _aware(moment: datetime) -> datetime:
    """SQLite may hand back an aggregate's time without its zone; it is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
