"""Every query of presence: session rows (transitions, batched heartbeats), replica leases,
and the reads that build an organization's view."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.db.base import utcnow
from wiremesh.server.db.batches import delete_batch
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.events.repository import last_event_id
from wiremesh.server.orgs.models import Organization
from wiremesh.server.paths.models import DeviceCandidates
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus, ServerReplica

_CONNECTED = ConnectionState.CONNECTED.value


_insert_connection = insert(ConnectionStatus).returning(ConnectionStatus.id)


async def insert_connection(session: AsyncSession, values: dict[str, Any]) -> int:
    """A new session's row; its id. Core, not ORM: every agent connect runs it."""
    connection = await session.connection()
    return int((await connection.execute(_insert_connection, values)).scalar_one())


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


def _database_time(session: AsyncSession, seconds_ago: float = 0.0) -> ColumnElement[datetime]:
    """Now (less ``seconds_ago``) on the database's clock on PostgreSQL, where replicas on
    several hosts must agree on one clock; the embedded SQLite database has a single server,
    on this host's clock."""
    if session.get_bind().dialect.name == "postgresql":
        now: ColumnElement[datetime] = func.now()
        return now - timedelta(seconds=seconds_ago) if seconds_ago else now
    return literal(utcnow() - timedelta(seconds=seconds_ago), ServerReplica.heartbeat_at.type)


async def renew_lease(session: AsyncSession, server_id: str) -> None:
    """Insert or refresh this replica's lease, on the database clock."""
    now = _database_time(session)
    result = await session.execute(
        update(ServerReplica)
        .where(ServerReplica.server_id == server_id)
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) == 0:
        await session.execute(
            insert(ServerReplica).values(server_id=server_id, started_at=now, heartbeat_at=now)
        )


async def lease_lapsed(session: AsyncSession, server_id: str, ttl: float) -> bool:
    """Whether this replica's lease is older than ``ttl`` by the database clock, or gone:
    other replicas may have taken it for dead and ended its rows."""
    fresh = (
        await session.execute(
            select(ServerReplica.heartbeat_at >= _database_time(session, ttl)).where(
                ServerReplica.server_id == server_id
            )
        )
    ).scalar_one_or_none()
    return not fresh


async def live_replicas(session: AsyncSession, ttl: float) -> list[str]:
    """Replicas whose lease was renewed within ``ttl`` seconds, by the database clock."""
    rows = await session.execute(
        select(ServerReplica.server_id).where(
            ServerReplica.heartbeat_at >= _database_time(session, ttl)
        )
    )
    return list(rows.scalars())


async def drop_lease(session: AsyncSession, server_id: str) -> None:
    await session.execute(delete(ServerReplica).where(ServerReplica.server_id == server_id))


async def forget_dead_replicas(session: AsyncSession, older_than: float) -> None:
    """Forget leases not renewed for ``older_than`` seconds (database clock)."""
    await session.execute(
        delete(ServerReplica).where(
            ServerReplica.heartbeat_at < _database_time(session, older_than)
        )
    )


@dataclass(frozen=True, slots=True)
class EndedRow:
    """A live row that a bulk statement ended: enough to tell every replica."""

    org_id: int
    peer_id: str
    connection_id: uuid.UUID
    server_id: str | None


_ENDED_COLUMNS = (
    ConnectionStatus.org_id,
    ConnectionStatus.peer_id,
    ConnectionStatus.connection_id,
    ConnectionStatus.server_id,
)


def _ended(rows: Iterable[Any]) -> list[EndedRow]:
    return [EndedRow(*row) for row in rows]


_supersede_live_rows = (
    update(ConnectionStatus)
    .where(
        ConnectionStatus.org_id == bindparam("match_org_id"),
        ConnectionStatus.peer_id == bindparam("match_peer_id"),
        ConnectionStatus.status == _CONNECTED,
    )
    .values(
        status=ConnectionState.DISCONNECTED.value,
        disconnected_at=bindparam("at"),
        end_reason="superseded",
    )
    .returning(*_ENDED_COLUMNS)
)


async def supersede_live_rows(
    session: AsyncSession, org_id: int, peer_id: str, at: datetime
) -> list[EndedRow]:
    """End the device's live row(s) wherever they are: a new session of it is starting.

    With the partial unique index, at most one row is live per device; this frees it.
    Built once and run on the connection (Core, not an ORM bulk update): every agent
    connect runs it."""
    connection = await session.connection()
    result = await connection.execute(
        _supersede_live_rows, {"match_org_id": org_id, "match_peer_id": peer_id, "at": at}
    )
    return _ended(result)


async def end_orphaned_connections(
    session: AsyncSession, *, keep_server_ids: Sequence[str], reason: str
) -> list[EndedRow]:
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
        .returning(*_ENDED_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    if keep_server_ids:
        statement = statement.where(
            (ConnectionStatus.server_id.is_(None))
            | (ConnectionStatus.server_id.not_in(list(keep_server_ids)))
        )
    return _ended(await session.execute(statement))


async def end_replica_connections(
    session: AsyncSession, server_id: str, *, reason: str, close_code: int, at: datetime
) -> list[EndedRow]:
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
        .returning(*_ENDED_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    return _ended(result)


async def delete_ended_before(session: AsyncSession, cutoff: datetime, batch_size: int) -> int:
    """Delete one batch of ended rows older than ``cutoff``; never a live row."""
    return await delete_batch(
        session,
        ConnectionStatus.id,
        ConnectionStatus.status != _CONNECTED,
        ConnectionStatus.disconnected_at < cutoff,
        batch_size=batch_size,
    )


async def set_public_port(session: AsyncSession, row_id: int, port: int) -> bool:
    """Record the port peers should use; False when the row is no longer live."""
    result = await session.execute(
        update(ConnectionStatus)
        .where(ConnectionStatus.id == row_id, ConnectionStatus.status == _CONNECTED)
        .values(public_port=port)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def get_connection(
    session: AsyncSession, connection_id: uuid.UUID
) -> ConnectionStatus | None:
    return (
        await session.execute(
            select(ConnectionStatus).where(ConnectionStatus.connection_id == connection_id)
        )
    ).scalar_one_or_none()


async def live_connection_ids(session: AsyncSession, server_id: str) -> set[uuid.UUID]:
    """The sessions the database believes this replica holds."""
    rows = await session.execute(
        select(ConnectionStatus.connection_id).where(
            ConnectionStatus.server_id == server_id, ConnectionStatus.status == _CONNECTED
        )
    )
    return set(rows.scalars())


async def online_peer_ids(session: AsyncSession, org_id: int) -> set[str]:
    """Peers of an org with a live session on any replica: the REST ``online`` flag."""
    rows = await session.execute(
        select(ConnectionStatus.peer_id).where(
            ConnectionStatus.org_id == org_id, ConnectionStatus.status == _CONNECTED
        )
    )
    return set(rows.scalars())


async def active_device_ids(session: AsyncSession, device_ids: Sequence[int]) -> set[int]:
    """Which of ``device_ids`` still exist unrevoked (the device sync's safety net)."""
    rows = await session.execute(
        select(VirtualIPMapping.id).where(
            VirtualIPMapping.id.in_(list(device_ids)), VirtualIPMapping.revoked_at.is_(None)
        )
    )
    return set(rows.scalars())


@dataclass(frozen=True, slots=True)
class LiveRow:
    """A live session as an organization's view needs it."""

    peer_id: str
    connection_id: uuid.UUID
    server_id: str | None
    public_ip: str | None
    public_port: int | None


@dataclass(frozen=True, slots=True)
class OrgSnapshot:
    """An org's devices and live sessions as of event ``version`` (one consistent read)."""

    version: int
    network: str | None
    devices: list[VirtualIPMapping]
    live: list[LiveRow]
    lan: dict[str, list[str]]
    """Each device's own addresses, by peer_id."""
    observed: dict[str, str]
    """The NAT mapping a relay last saw, by peer_id."""


async def org_snapshot(session: AsyncSession, org_id: int) -> OrgSnapshot:
    """Read an organization's view and the newest event id in one snapshot.

    On PostgreSQL the transaction is REPEATABLE READ, so every event up to ``version`` is
    reflected and none after it (event ids follow commit order); SQLite transactions are
    snapshots already. Call it as the first statement of a fresh session.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    version = await last_event_id(session)
    network = (
        await session.execute(select(Organization.network_cidr).where(Organization.id == org_id))
    ).scalar_one_or_none()
    devices = list(
        (
            await session.execute(
                select(VirtualIPMapping)
                .where(VirtualIPMapping.org_id == org_id, VirtualIPMapping.revoked_at.is_(None))
                .order_by(VirtualIPMapping.id)
            )
        ).scalars()
    )
    live = [
        LiveRow(*row)
        for row in await session.execute(
            select(
                ConnectionStatus.peer_id,
                ConnectionStatus.connection_id,
                ConnectionStatus.server_id,
                ConnectionStatus.public_ip,
                ConnectionStatus.public_port,
            ).where(ConnectionStatus.org_id == org_id, ConnectionStatus.status == _CONNECTED)
        )
    ]
    lan: dict[str, list[str]] = {}
    observed: dict[str, str] = {}
    for peer_id, own, seen in await session.execute(
        select(VirtualIPMapping.peer_id, DeviceCandidates.lan, DeviceCandidates.observed)
        .join(VirtualIPMapping, VirtualIPMapping.id == DeviceCandidates.device_id)
        .where(DeviceCandidates.org_id == org_id)
    ):
        lan[peer_id] = [str(item) for item in own or ()]
        if seen:
            observed[peer_id] = seen
    return OrgSnapshot(
        version=version, network=network, devices=devices, live=live, lan=lan, observed=observed
    )
