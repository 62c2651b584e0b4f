"""Alert queries. Every decision that mails is a conditional UPDATE on ``device_alert_state``,
so two replicas (or the checker and a transition) never open the same alert twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.alerts.models import DeviceAlertState, OrgAlertSettings
from wiremesh.server.alerts.rules import OfflineDevice
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus


async def get_settings(session: AsyncSession, org_id: int) -> OrgAlertSettings | None:
    return await session.get(OrgAlertSettings, org_id)


async def enabled_settings(session: AsyncSession) -> dict[int, OrgAlertSettings]:
    """Every org that opted in, by org id."""
    rows = await session.execute(select(OrgAlertSettings).where(OrgAlertSettings.enabled))
    return {row.org_id: row for row in rows.scalars()}


async def forget_device_states(session: AsyncSession, org_id: int) -> None:
    await session.execute(delete(DeviceAlertState).where(DeviceAlertState.org_id == org_id))


def _device(org_id: int, peer_id: str) -> list[ColumnElement[bool]]:
    return [DeviceAlertState.org_id == org_id, DeviceAlertState.peer_id == peer_id]


async def ensure_state(session: AsyncSession, org_id: int, peer_id: str) -> None:
    """The device's state row, created if missing; racing replicas both succeed."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(DeviceAlertState)
        .values(org_id=org_id, peer_id=peer_id, alert_open=False, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["org_id", "peer_id"])
    )


async def mark_offline(
    session: AsyncSession, org_id: int, peer_id: str, since: datetime, *, keep_earlier: bool
) -> None:
    """Record since when the device is offline; ``keep_earlier`` leaves a recorded time."""
    condition = _device(org_id, peer_id)
    if keep_earlier:
        condition.append(DeviceAlertState.offline_since.is_(None))
    await session.execute(
        update(DeviceAlertState)
        .where(*condition)
        .values(offline_since=since, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def claim_alert(
    session: AsyncSession, org_id: int, peer_id: str, *, now: datetime, window_start: datetime
) -> bool:
    """Open an alert for this device unless one is open or one went out after
    ``window_start``; True for the one caller that opened it."""
    result = await session.execute(
        update(DeviceAlertState)
        .where(
            *_device(org_id, peer_id),
            DeviceAlertState.alert_open.is_(False),
            or_(
                DeviceAlertState.last_alert_at.is_(None),
                DeviceAlertState.last_alert_at <= window_start,
            ),
        )
        .values(alert_open=True, last_alert_at=now, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def close_alert(
    session: AsyncSession, org_id: int, peer_id: str
) -> tuple[bool, datetime | None]:
    """The device is back: close its open alert, forget since when it was offline. Whether an
    alert was open (to the one caller that closed it), and its offline time."""
    result = await session.execute(
        update(DeviceAlertState)
        .where(*_device(org_id, peer_id), DeviceAlertState.alert_open.is_(True))
        .values(alert_open=False, updated_at=utcnow())
        .returning(DeviceAlertState.offline_since)
        .execution_options(synchronize_session=False)
    )
    closed = result.one_or_none()
    await session.execute(
        update(DeviceAlertState)
        .where(*_device(org_id, peer_id), DeviceAlertState.offline_since.is_not(None))
        .values(offline_since=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if closed is None:
        return False, None
    offline_since: datetime | None = closed[0]
    return True, offline_since


async def offline_devices(session: AsyncSession, org_ids: list[int]) -> list[OfflineDevice]:
    """Devices of these orgs whose latest session has ended and that have no open alert,
    oldest session first: what the checker weighs against the rules."""
    latest = (
        select(
            ConnectionStatus.org_id,
            ConnectionStatus.peer_id,
            func.max(ConnectionStatus.id).label("last_id"),
        )
        .where(ConnectionStatus.org_id.in_(org_ids))
        .group_by(ConnectionStatus.org_id, ConnectionStatus.peer_id)
        .subquery()
    )
    statement = (
        select(
            ConnectionStatus,
            VirtualIPMapping.hostname,
            VirtualIPMapping.last_seen_at,
            DeviceAlertState.last_alert_at,
        )
        .join(latest, ConnectionStatus.id == latest.c.last_id)
        .join(
            VirtualIPMapping,
            and_(
                VirtualIPMapping.org_id == ConnectionStatus.org_id,
                VirtualIPMapping.peer_id == ConnectionStatus.peer_id,
                VirtualIPMapping.revoked_at.is_(None),
            ),
        )
        .outerjoin(
            DeviceAlertState,
            and_(
                DeviceAlertState.org_id == ConnectionStatus.org_id,
                DeviceAlertState.peer_id == ConnectionStatus.peer_id,
            ),
        )
        .where(
            ConnectionStatus.status != ConnectionState.CONNECTED.value,
            ConnectionStatus.disconnected_at.is_not(None),
            or_(DeviceAlertState.alert_open.is_(None), DeviceAlertState.alert_open.is_(False)),
        )
        .order_by(ConnectionStatus.id)
    )
    found = []
    for connection, hostname, seen_at, last_alert_at in await session.execute(statement):
        assert connection.disconnected_at is not None
        found.append(
            OfflineDevice(
                org_id=connection.org_id,
                peer_id=connection.peer_id,
                hostname=hostname,
                virtual_ip=connection.virtual_ip,
                reason=connection.status,
                offline_since=connection.disconnected_at,
                seen_at=seen_at,
                last_alert_at=last_alert_at,
            )
        )
    return found
