"""Deleting old rows in batches: one short transaction per batch, so a large backlog never
holds a long lock or a long transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute


async def delete_batch(
    session: AsyncSession,
    id_column: InstrumentedAttribute[int],
    *criteria: ColumnElement[bool],
    batch_size: int,
) -> int:
    """Delete up to ``batch_size`` rows matching ``criteria``, oldest id first; the criteria
    are checked again by the DELETE, so a row that changed meanwhile is left alone."""
    ids = (
        (
            await session.execute(
                select(id_column).where(*criteria).order_by(id_column).limit(batch_size)
            )
        )
        .scalars()
        .all()
    )
    if not ids:
        return 0
    model: Any = id_column.class_
    await session.execute(
        delete(model)
        .where(id_column.in_(ids), *criteria)
        .execution_options(synchronize_session=False)
    )
    return len(ids)


async def delete_in_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    delete_one_batch: Callable[[AsyncSession], Awaitable[int]],
    batch_size: int,
) -> int:
    """Run ``delete_one_batch`` in its own transaction until a batch comes back short."""
    total = 0
    while True:
        async with sessionmaker() as session:
            deleted = await delete_one_batch(session)
            await session.commit()
        total += deleted
        if deleted < batch_size:
            return total
        await asyncio.sleep(0)
