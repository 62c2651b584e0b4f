"""Queries of ``mesh_event``: the reader's tail, its position, and pruning."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.db.batches import delete_batch
from wiremesh.server.events.models import MeshEvent
from wiremesh.server.events.schemas import AnyEvent, parse_event


async def last_event_id(session: AsyncSession) -> int:
    """The newest event's id (0 when there is none): where a fresh reader starts."""
    return int((await session.execute(select(func.max(MeshEvent.id)))).scalar() or 0)


async def first_event_id(session: AsyncSession) -> int | None:
    return (await session.execute(select(func.min(MeshEvent.id)))).scalar()


async def events_after(session: AsyncSession, cursor: int, limit: int) -> list[AnyEvent]:
    """Up to ``limit`` events after ``cursor`` in id order; kinds this version does not know
    are skipped (their ids still advance the cursor through the last one returned)."""
    rows = await session.execute(
        select(MeshEvent.id, MeshEvent.org_id, MeshEvent.kind, MeshEvent.payload)
        .where(MeshEvent.id > cursor)
        .order_by(MeshEvent.id)
        .limit(limit)
    )
    events: list[AnyEvent] = []
    for event_id, org_id, kind, payload in rows:
        event = parse_event(event_id, org_id, kind, payload)
        if event is not None:
            events.append(event)
    return events


async def prune_events_before(session: AsyncSession, cutoff: datetime, batch_size: int) -> int:
    """Delete one batch of events older than ``cutoff``; the newest is always kept, so a fresh
    reader's position never depends on the sequence alone."""
    newest = await last_event_id(session)
    return await delete_batch(
        session,
        MeshEvent.id,
        MeshEvent.created_at < cutoff,
        MeshEvent.id < newest,
        batch_size=batch_size,
    )
