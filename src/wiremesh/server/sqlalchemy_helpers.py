"""Small query helpers shared by the domains."""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession


async def scalar_exists(session: AsyncSession, *criteria: ColumnElement[bool]) -> bool:
    """Whether any row matches every criterion."""
    result = await session.execute(select(exists().where(*criteria)))
    return bool(result.scalar())
