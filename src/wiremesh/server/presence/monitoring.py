"""The seed's monitoring questions: who is online, who is at risk, a device's history, and
which virtual IPs have gone unused."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.orgs.models import Organization
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus
from wiremesh.server.presence.schemas import (
    ConnectionOut,
    DeviceHistory,
    HistorySummary,
    StaleAddress,
)
from wiremesh.server.tenancy import TenantScope, visible_to
from wiremesh.server.users.models import User

DEFAULT_FLAP_WINDOW = timedelta(seconds=60)


def _connections_query() -> Select[ConnectionStatus, str, VirtualIPMapping]:
    return (
        select(ConnectionStatus, User.email, VirtualIPMapping)
        .join(User, User.id == ConnectionStatus.user_id)
        .outerjoin(
            VirtualIPMapping,
            and_(
                VirtualIPMapping.org_id == ConnectionStatus.org_id,
                VirtualIPMapping.peer_id == ConnectionStatus.peer_id,
            ),
        )
    )


def connection_out(
    row: ConnectionStatus, email: str, device: VirtualIPMapping | None
) -> ConnectionOut:
    duration = (
        (row.disconnected_at - row.connected_at).total_seconds()
        if row.disconnected_at is not None
        else None
    )
    return ConnectionOut(
        id=row.id,
        connection_id=row.connection_id,
        org_id=row.org_id,
        user_id=row.user_id,
        user_email=email,
        peer_id=row.peer_id,
        hostname=device.hostname if device else None,
        device_id=device.id if device else None,
        virtual_ip=row.virtual_ip,
        public_ip=row.public_ip,
        public_port=row.public_port,
        status=row.status,
        connected_at=row.connected_at,
        disconnected_at=row.disconnected_at,
        last_ping_at=row.last_ping_at,
        last_pong_at=row.last_pong_at,
        last_seen_at=row.last_seen_at,
        end_reason=row.end_reason,
        close_code=row.close_code,
        duration_seconds=duration,
    )


async def list_connections(
    session: AsyncSession,
    scope: TenantScope,
    *,
    status: ConnectionState | None,
    limit: int,
    offset: int = 0,
) -> list[ConnectionOut]:
    """Connections, most recent activity first (the seed's "active connections" order)."""
    query = _connections_query().where(visible_to(scope, ConnectionStatus.org_id))
    if status is not None:
        query = query.where(ConnectionStatus.status == status.value)
    query = query.order_by(
        ConnectionStatus.last_seen_at.desc().nulls_last(), ConnectionStatus.id.desc()
    )
    rows = (await session.execute(query.limit(limit).offset(offset))).all()
    return [connection_out(row[0], row[1], row[2]) for row in rows]


async def at_risk(
    session: AsyncSession, scope: TenantScope, *, silent_for: timedelta, limit: int
) -> list[ConnectionOut]:
    """Live connections with no pong for longer than ``silent_for`` (or none at all yet)."""
    cutoff = utcnow() - silent_for
    query = _connections_query().where(
        ConnectionStatus.status == ConnectionState.CONNECTED.value,
        or_(
            ConnectionStatus.last_pong_at < cutoff,
            and_(ConnectionStatus.last_pong_at.is_(None), ConnectionStatus.connected_at < cutoff),
        ),
        visible_to(scope, ConnectionStatus.org_id),
    )
    query = query.order_by(ConnectionStatus.last_pong_at.asc().nulls_first()).limit(limit)
    return [connection_out(r[0], r[1], r[2]) for r in (await session.execute(query)).all()]


def summarize(
    sessions: Sequence[ConnectionOut],
    since: datetime,
    until: datetime,
    flap_window: timedelta,
) -> HistorySummary:
    """Counts over a period; a session's time is clipped to the period, and time covered by
    two sessions at once (a superseded session ends just after its successor started)
    counts once. A period that is empty or reversed (``since`` >= ``until``) has no
    connected time and an availability of 0."""
    connected = 0.0
    covered_until = since
    flaps = 0
    previous_end: datetime | None = None
    for item in sorted(sessions, key=lambda s: s.connected_at):
        start = max(item.connected_at, covered_until)
        end = min(item.disconnected_at or until, until)
        if end > start:
            connected += (end - start).total_seconds()
            covered_until = end
        if previous_end is not None and item.connected_at - previous_end <= flap_window:
            flaps += 1
        previous_end = item.disconnected_at
    period = max((until - since).total_seconds(), 1e-9)
    return HistorySummary(
        sessions=len(sessions),
        timeouts=sum(1 for s in sessions if s.status == ConnectionState.TIMEOUT.value),
        disconnects=sum(1 for s in sessions if s.status == ConnectionState.DISCONNECTED.value),
        flaps=flaps,
        connected_seconds=round(connected, 3),
        availability=round(min(connected / period, 1.0), 6),
    )


async def device_history(
    session: AsyncSession,
    device: VirtualIPMapping,
    *,
    since: datetime,
    until: datetime,
    flap_window: timedelta = DEFAULT_FLAP_WINDOW,
    limit: int = 1000,
) -> DeviceHistory:
    """Every session of one device that overlaps [since, until], newest first.

    Connected time and availability count from the device's enrollment when that is later
    than ``since``: a device enrolled a minute ago was not offline for the days before."""
    query = (
        _connections_query()
        .where(
            ConnectionStatus.org_id == device.org_id,
            ConnectionStatus.peer_id == device.peer_id,
            ConnectionStatus.connected_at <= until,
            or_(
                ConnectionStatus.disconnected_at.is_(None),
                ConnectionStatus.disconnected_at >= since,
            ),
        )
        .order_by(ConnectionStatus.connected_at.desc(), ConnectionStatus.id.desc())
        .limit(limit)
    )
    sessions = [connection_out(r[0], r[1], r[2]) for r in (await session.execute(query)).all()]
    return DeviceHistory(
        device_id=device.id,
        peer_id=device.peer_id,
        hostname=device.hostname,
        since=since,
        until=until,
        flap_window_seconds=flap_window.total_seconds(),
        summary=summarize(sessions, max(since, device.created_at), until, flap_window),
        sessions=sessions,
    )


async def stale_addresses(
    session: AsyncSession, scope: TenantScope, *, unused_for: timedelta, limit: int
) -> list[StaleAddress]:
    """Virtual IPs not seen for ``unused_for`` or never seen (the seed's 24 h query)."""
    cutoff = utcnow() - unused_for
    query = (
        select(VirtualIPMapping, Organization.name, User.email)
        .join(Organization, Organization.id == VirtualIPMapping.org_id)
        .join(User, User.id == VirtualIPMapping.user_id)
        .where(
            or_(VirtualIPMapping.last_seen_at.is_(None), VirtualIPMapping.last_seen_at < cutoff),
            visible_to(scope, VirtualIPMapping.org_id),
        )
        .order_by(VirtualIPMapping.last_seen_at.asc().nulls_first(), VirtualIPMapping.id)
        .limit(limit)
    )
    result = []
    for device, org_name, email in (await session.execute(query)).all():
        result.append(
            StaleAddress(
                device_id=device.id,
                org_id=device.org_id,
                org_name=org_name,
                user_email=email,
                peer_id=device.peer_id,
                hostname=device.hostname,
                virtual_ip=device.virtual_ip,
                last_seen_at=device.last_seen_at,
            )
        )
    return result
