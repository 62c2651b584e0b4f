"""Record events inside the transaction that makes the change; wake the readers on commit.

Ids must increase in commit order, or a reader that has seen id 6 would never see a 5 that
committed after it. SQLite has one writer at a time, so that holds by itself; on
PostgreSQL every transaction that records events first takes one transaction-level
advisory lock, so event-writing transactions commit one after another. The lock is taken
just before the insert and released at commit: it is held for two round trips.
``pg_notify`` in the same transaction is delivered only if it commits.
"""

from __future__ import annotations

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.db.base import utcnow
from wiremesh.server.events.models import MeshEvent
from wiremesh.server.events.schemas import Event

CHANNEL = "wiremesh_events"
"""The PostgreSQL NOTIFY channel that wakes every replica's event reader."""
ORDER_LOCK_KEY = 0x776D6573685F6576
"""The advisory lock that orders event-writing transactions (``wmesh_ev``)."""
EVENTS_RECORDED = "wiremesh.events_recorded"
"""Set in ``session.info`` when a transaction recorded events (see db.session)."""

_order_and_notify = text("SELECT pg_advisory_xact_lock(:key), pg_notify(:channel, '')")


async def record(session: AsyncSession, *events: Event) -> None:
    """Add ``events`` to the session's transaction; they exist once it commits."""
    if not events:
        return
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await connection.execute(_order_and_notify, {"key": ORDER_LOCK_KEY, "channel": CHANNEL})
    now = utcnow()
    await connection.execute(
        insert(MeshEvent),
        [
            {
                "org_id": event.org_id,
                "kind": event.kind,
                "payload": event.payload(),
                "created_at": now,
            }
            for event in events
        ],
    )
    session.info[EVENTS_RECORDED] = True
