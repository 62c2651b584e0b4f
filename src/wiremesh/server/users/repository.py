"""Users: queries only."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.users.models import User


async def get(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def list_page(session: AsyncSession, *, limit: int, offset: int) -> Sequence[User]:
    statement = select(User).order_by(User.id).limit(limit).offset(offset)
    return (await session.execute(statement)).scalars().all()


async def count(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(User))).scalar_one()


async def count_server_admins(session: AsyncSession) -> int:
    statement = (
        select(func.count())
        .select_from(User)
        .where(User.is_server_admin.is_(True), User.is_active.is_(True))
    )
    return (await session.execute(statement)).scalar_one()


async def delete_user(session: AsyncSession, user_id: int) -> None:
    """Delete the row; the database cascades memberships, tokens, devices and history."""
    await session.execute(delete(User).where(User.id == user_id))


async def transaction_lock(session: AsyncSession, key: int) -> None:
    """Serialize one kind of write until the transaction ends.

    PostgreSQL takes a transaction-scoped advisory lock. SQLite needs none: every transaction
    there starts with BEGIN IMMEDIATE, which admits one writer at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(key)))
