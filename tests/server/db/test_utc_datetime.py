"""Timestamps are timezone-aware UTC on both databases, and a naive datetime never gets in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, func, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.auth.models import ApiToken
from wiremesh.server.db.base import UTCDateTime
from wiremesh.server.db.models import Base
from wiremesh.server.orgs.models import Organization
from wiremesh.server.presence.models import ConnectionStatus
from wiremesh.server.users.models import User

Maker = async_sessionmaker[AsyncSession]

HANOI = timezone(timedelta(hours=7))
# 15:30:00.25 in Hanoi is 08:30:00.25 UTC.
IN_HANOI = datetime(2026, 11, 26, 15, 30, 0, 250_000, tzinfo=HANOI)
NAIVE = datetime(2026, 11, 26, 8, 30)  # noqa: DTZ001 - the point of these tests


async def _user(maker: Maker) -> int:
    async with maker() as session:
        user = User(email="t@example.com", name="T")
        session.add(user)
        await session.commit()
        return user.id


def _token(user_id: int, **times: datetime | None) -> ApiToken:
    return ApiToken(
        user_id=user_id, name="t", lookup="lookup0000000001", secret_hash="0" * 64, **times
    )


async def test_an_aware_timestamp_comes_back_as_the_same_instant_in_utc(
    sessionmaker: Maker, backend: str
) -> None:
    user_id = await _user(sessionmaker)
    async with sessionmaker() as session:
        session.add(_token(user_id, expires_at=IN_HANOI))
        await session.commit()

    async with sessionmaker() as session:
        token = (await session.scalars(select(ApiToken))).one()
        expires_at = token.expires_at
        core_value = await session.scalar(select(ApiToken.expires_at))
        raw = await session.scalar(text("SELECT expires_at FROM api_token"))

    for value in (expires_at, core_value):
        assert value == IN_HANOI
        assert value is not None
        assert value.tzinfo is UTC
        assert (value.hour, value.minute, value.microsecond) == (8, 30, 250_000)
    if backend == "sqlite":
        # No time zones in SQLite: stored as naive UTC wall time, never the local time.
        assert raw == "2026-11-26 08:30:00.250000"
    else:
        assert raw == IN_HANOI


async def test_server_default_timestamps_are_utc(sessionmaker: Maker, backend: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    async with sessionmaker() as session:
        if backend == "postgresql":
            # The session's time zone must not leak into what comes back.
            await session.execute(text("SET TIME ZONE 'Asia/Ho_Chi_Minh'"))
        await session.execute(
            text("INSERT INTO organization (name, network_cidr) VALUES ('o', '100.64.0.0/20')")
        )
        await session.commit()
    after = datetime.now(UTC)

    async with sessionmaker() as session:
        if backend == "postgresql":
            await session.execute(text("SET TIME ZONE 'America/New_York'"))
        created_at = await session.scalar(select(Organization.created_at))
    assert created_at is not None
    assert created_at.tzinfo is UTC
    assert before <= created_at <= after


async def test_a_naive_datetime_is_refused_on_write(sessionmaker: Maker) -> None:
    user_id = await _user(sessionmaker)
    async with sessionmaker() as session:
        session.add(_token(user_id, expires_at=NAIVE))
        with pytest.raises(StatementError, match="naive datetime") as raised:
            await session.commit()
        assert isinstance(raised.value.orig, ValueError)

    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ApiToken)) == 0


async def test_a_naive_datetime_is_refused_in_a_query(sessionmaker: Maker) -> None:
    async with sessionmaker() as session:
        with pytest.raises(StatementError, match="naive datetime"):
            await session.execute(
                select(ConnectionStatus).where(ConnectionStatus.last_seen_at < NAIVE)
            )


def test_every_timestamp_column_is_a_utc_datetime() -> None:
    """A plain DateTime column would hand out naive values on SQLite."""
    columns = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, DateTime)
    ]
    assert not columns, f"use UTCDateTime (Mapped[datetime]) for {columns}"
    utc_columns = [
        column
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, UTCDateTime)
    ]
    assert {f"{c.table.name}.{c.name}" for c in utc_columns} >= {
        "connection_status.connected_at",
        "connection_status.last_pong_at",
        "smtp_settings.updated_at",
        "virtual_ip_mapping.last_seen_at",
    }


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_postgresql_stores_every_timestamp_as_timestamptz(sessionmaker: Maker) -> None:
    async with sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND data_type LIKE 'timestamp%'"
            )
        )
        types = {f"{table}.{column}": data_type for table, column, data_type in rows}
    assert "virtual_ip_mapping.last_seen_at" in types
    assert set(types.values()) == {"timestamp with time zone"}, types
