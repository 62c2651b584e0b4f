"""Writes and reads of ``connection_status``: transitions, batched heartbeats, monitoring."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus, ServerReplica

_CONNECTED = ConnectionState.CONNECTED.value


async def insert_connection(session: AsyncSession, row: ConnectionStatus) -> ConnectionStatus:
    session.add(row)
    await session.flush()
    return row


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """How one session ended, with its final heartbeat timestamps."""

    row_id: int
    device_id: int | None
    status: ConnectionState
    at: datetime
    end_reason: str
    close_code: int | None
    last_ping_at: datetime | None
    last_pong_at: datetime | None
    last_seen_at: datetime | None


async def end_connection(session: AsyncSession, end: SessionEnd) -> bool:
    """End a live row exactly once; False when it had already ended (never reopened)."""
    values: dict[str, Any] = {
        "status": end.status.value,
        "disconnected_at": end.at,
        "end_reason": end.end_reason,
        "close_code": end.close_code,
    }
    for column in ("last_ping_at", "last_pong_at", "last_seen_at"):
        value = getattr(end, column)
        if value is not None:
            values[column] = value
    result = await session.execute(
        update(ConnectionStatus)
        .where(ConnectionStatus.id == end.row_id, ConnectionStatus.status == _CONNECTED)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if end.device_id is not None and end.last_seen_at is not None:
        await session.execute(
            update(VirtualIPMapping)
            .where(VirtualIPMapping.id == end.device_id)
            .values(last_seen_at=end.last_seen_at)
            .execution_options(synchronize_session=False)
        )
    return bool(getattr(result, "rowcount", 0) == 1)


_heartbeat_update = (
    update(ConnectionStatus)
    .where(ConnectionStatus.id == bindparam("row_id"), ConnectionStatus.status == _CONNECTED)
    .values(
        last_ping_at=bindparam("ping_at"),
        last_pong_at=bindparam("pong_at"),
        last_seen_at=bindparam("seen_at"),
    )
)
_device_seen_update = (
    update(VirtualIPMapping)
    .where(VirtualIPMapping.id == bindparam("device_id"))
    .values(last_seen_at=bindparam("seen_at"))
)


async def flush_heartbeats(
    session: AsyncSession,
    connections: Sequence[dict[str, Any]],
    devices: Sequence[dict[str, Any]],
) -> None:
    """One batched statement per table: the whole heartbeat write of a flush interval.

    ``connections`` items: row_id, ping_at, pong_at, seen_at; ``devices``: device_id, seen_at.
    Rows that ended meanwhile are left alone (the status guard), so history never changes.
    """
    connection = await session.connection()
    if connections:
        await connection.execute(_heartbeat_update, list(connections))
    if devices:
        await connection.execute(_device_seen_update, list(devices))


async def renew_lease(session: AsyncSession, server_id: str, at: datetime) -> None:
    """Insert or refresh this replica's lease row."""
    result = await session.execute(
        update(ServerReplica)
        .where(ServerReplica.server_id == server_id)
        .values(heartbeat_at=at)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) == 0:
        session.add(ServerReplica(server_id=server_id, started_at=at, heartbeat_at=at))
        await session.flush()


async def live_replicas(session: AsyncSession, since: datetime) -> list[str]:
    rows = await session.execute(
        select(ServerReplica.server_id).where(ServerReplica.heartbeat_at >= since)
    )
    return list(rows.scalars())


async def drop_lease(session: AsyncSession, server_id: str) -> None:
    await session.execute(delete(ServerReplica).where(ServerReplica.server_id == server_id))


async def forget_dead_replicas(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(ServerReplica).where(ServerReplica.heartbeat_at < before))


async def end_orphaned_connections(
    session: AsyncSession, *, keep_server_ids: Sequence[str], reason: str
) -> int:
    """End rows left ``connected`` by processes that are gone; disconnected_at = last seen."""
    statement = (
        update(ConnectionStatus)
        .where(ConnectionStatus.status == _CONNECTED)
        .values(
            status=ConnectionState.DISCONNECTED.value,
            disconnected_at=func.coalesce(
                ConnectionStatus.last_seen_at, ConnectionStatus.connected_at
            ),
            end_reason=reason,
        )
        .execution_options(synchronize_session=False)
    )
    if keep_server_ids:
        statement = statement.where(
            (ConnectionStatus.server_id.is_(None))
            | (ConnectionStatus.server_id.not_in(list(keep_server_ids)))
        )
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


async def end_replica_connections(
    session: AsyncSession, server_id: str, *, reason: str, close_code: int, at: datetime
) -> int:
    """End every live row of one replica at once (its orderly shutdown)."""
    result = await session.execute(
        update(ConnectionStatus)
        .where(ConnectionStatus.server_id == server_id, ConnectionStatus.status == _CONNECTED)
        .values(
            status=ConnectionState.DISCONNECTED.value,
            disconnected_at=at,
            end_reason=reason,
            close_code=close_code,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_ended_before(session: AsyncSession, cutoff: datetime, batch_size: int) -> int:
    """Delete one batch of ended rows older than ``cutoff``; never a live row."""
    ids = (
        (
            await session.execute(
                select(ConnectionStatus.id)
                .where(
                    ConnectionStatus.status != _CONNECTED,
                    ConnectionStatus.disconnected_at < cutoff,
                )
                .order_by(ConnectionStatus.id)
                .limit(batch_size)
            )
        )
        .scalars()
        .all()
    )
    if not ids:
        return 0
    await session.execute(
        delete(ConnectionStatus)
        .where(ConnectionStatus.id.in_(ids), ConnectionStatus.status != _CONNECTED)
        .execution_options(synchronize_session=False)
    )
    return len(ids)


async def set_public_port(session: AsyncSession, row_id: int, port: int) -> None:
    await session.execute(
        update(ConnectionStatus)
        .where(ConnectionStatus.id == row_id, ConnectionStatus.status == _CONNECTED)
        .values(public_port=port)
        .execution_options(synchronize_session=False)
    )


async def get_connection(
    session: AsyncSession, connection_id: uuid.UUID
) -> ConnectionStatus | None:
    return (
        await session.execute(
            select(ConnectionStatus).where(ConnectionStatus.connection_id == connection_id)
        )
    ).scalar_one_or_none()
