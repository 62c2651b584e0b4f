"""API tokens: queries only."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth.models import ApiToken


async def get(session: AsyncSession, token_id: int) -> ApiToken | None:
    return await session.get(ApiToken, token_id)


async def list_for_user(session: AsyncSession, user_id: int) -> Sequence[ApiToken]:
    statement = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
    return (await session.execute(statement)).scalars().all()
