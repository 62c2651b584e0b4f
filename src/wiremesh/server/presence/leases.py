"""Replica leases: which server processes are alive, on the database's clock.

Each replica renews its lease every third of ``replica_lease_ttl``. Rows of a replica whose
lease ran out are ended as ``server_lost`` by whichever replica notices, and every replica
is told by events. A replica that was only paused (SIGSTOP, a long GC, a database hiccup)
finds its lease had lapsed when it renews; it then compares its live sessions with the rows
the database still calls live and closes the sessions that lost theirs, so their agents
reconnect with new rows. Never a live session without a live row, for longer than a tick.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.events import recorder
from wiremesh.server.presence import repository
from wiremesh.server.presence.history import ended_events

logger = logging.getLogger("wiremesh.presence")

ORPHAN_REASON = "server_lost"
FORGET_AFTER_TTLS = 10
MIN_FORGET_SECONDS = 3600.0


class ReplicaLeases:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        server_id: str,
        ttl: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.server_id = server_id
        self.ttl = ttl

    async def _end_orphans(self, session: AsyncSession, *, starting: bool) -> int:
        """On PostgreSQL a row is an orphan when its replica's lease has run out; the embedded
        SQLite database has one server process, so every row not owned by this one is.

        At start-up, rows under this replica's own id are from its previous life: a stable
        server id makes a restart end them at once, without waiting out a lease."""
        keep = [] if starting else [self.server_id]
        if session.get_bind().dialect.name != "sqlite":
            others = await repository.live_replicas(session, self.ttl)
            keep += [server_id for server_id in others if server_id != self.server_id]
        ended = await repository.end_orphaned_connections(
            session, keep_server_ids=keep, reason=ORPHAN_REASON
        )
        await recorder.record(session, *ended_events(ended, ORPHAN_REASON))
        if ended:
            owners = sorted({row.server_id or "(none)" for row in ended})
            logger.info(
                "taking over %d connection rows of %s: %s",
                len(ended),
                "this replica's previous run" if owners == [self.server_id] else "replicas",
                ", ".join(owners),
                extra={"event": "lease_takeover", "rows": len(ended), "replicas": ",".join(owners)},
            )
        return len(ended)

    async def start(self) -> int:
        """Take the lease and end what stopped processes left open; returns rows ended."""
        async with self.sessionmaker() as session:
            await repository.renew_lease(session, self.server_id)
            ended = await self._end_orphans(session, starting=True)
            await session.commit()
        return ended

    async def reap_orphans(self, *, starting: bool = False) -> int:
        """End, in a transaction of its own, the rows that stopped processes left open."""
        async with self.sessionmaker() as session:
            ended = await self._end_orphans(session, starting=starting)
            await session.commit()
        return ended

    async def renew(self) -> None:
        async with self.sessionmaker() as session:
            await repository.renew_lease(session, self.server_id)
            await session.commit()

    async def tick(self) -> tuple[int, bool]:
        """Renew, end what dead replicas left, forget long-gone ones: one transaction.

        Returns (rows of others ended, whether this replica's own lease had lapsed)."""
        async with self.sessionmaker() as session:
            lapsed = await repository.lease_lapsed(session, self.server_id, self.ttl)
            await repository.renew_lease(session, self.server_id)
            ended = await self._end_orphans(session, starting=False)
            await repository.forget_dead_replicas(
                session, max(self.ttl * FORGET_AFTER_TTLS, MIN_FORGET_SECONDS)
            )
            await session.commit()
        return ended, lapsed

    async def live_connection_ids(self) -> set[uuid.UUID]:
        async with self.sessionmaker() as session:
            return await repository.live_connection_ids(session, self.server_id)

    async def drop(self) -> None:
        async with self.sessionmaker() as session:
            await repository.drop_lease(session, self.server_id)
            await session.commit()
