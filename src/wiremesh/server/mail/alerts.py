"""Offline alerts: mail an org's admins when a device goes offline, and when it is back.

Opt-in per org (``org_alert_settings``). The rule:

- ``offline_threshold_seconds == 0``: the alert goes out when the device goes offline
  (``on_device_offline``, called by presence inside its transition transaction);
- ``offline_threshold_seconds > 0``: ``OfflineAlertChecker`` looks every few seconds for
  devices whose latest session ended longer ago than the threshold, and not seen since;
- debounce: at most one offline alert per device per ``debounce_seconds``; a device that
  flaps inside the window is reported once (and again by the checker if it is still offline
  when the window ends);
- recovery: a device with an open alert gets one "back online" mail when it reconnects.

Every decision is a conditional UPDATE on ``device_alert_state``, so two replicas (or the
checker and a transition) never mail the same alert twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.errors import Invalid, NotFound
from wiremesh.server.mail import outbox
from wiremesh.server.mail.models import DeviceAlertState, MailKind, OrgAlertSettings
from wiremesh.server.mail.render import format_duration, format_time, render
from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus
from wiremesh.server.users.models import User
from wiremesh.server.workers.periodic import PeriodicWorker

logger = logging.getLogger("wiremesh.server.mail.alerts")

DEFAULT_DEBOUNCE_SECONDS = 3600
MAX_THRESHOLD_SECONDS = 30 * 86400
MAX_DEBOUNCE_SECONDS = 7 * 86400
DEFAULT_CHECK_INTERVAL = 30.0

_REASONS = {
    ConnectionState.TIMEOUT.value: "stopped answering heartbeats (timed out)",
    ConnectionState.DISCONNECTED.value: "disconnected",
}


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertSettingsView:
    org_id: int
    enabled: bool
    offline_threshold_seconds: int
    debounce_seconds: int
    enabled_at: datetime | None
    updated_at: datetime | None


def _view(org_id: int, row: OrgAlertSettings | None) -> AlertSettingsView:
    if row is None:
        return AlertSettingsView(org_id, False, 0, DEFAULT_DEBOUNCE_SECONDS, None, None)
    return AlertSettingsView(
        org_id,
        row.enabled,
        row.offline_threshold_seconds,
        row.debounce_seconds,
        row.enabled_at,
        row.updated_at,
    )


async def _org(session: AsyncSession, org_id: int) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFound("organization")
    return org


async def get_alert_settings(session: AsyncSession, org_id: int) -> AlertSettingsView:
    await _org(session, org_id)
    return _view(org_id, await session.get(OrgAlertSettings, org_id))


async def put_alert_settings(
    session: AsyncSession,
    org_id: int,
    *,
    enabled: bool,
    offline_threshold_seconds: int = 0,
    debounce_seconds: int = DEFAULT_DEBOUNCE_SECONDS,
    now: datetime | None = None,
) -> AlertSettingsView:
    """Replace the org's alert settings. Switching alerts on starts afresh: devices that went
    offline before are not reported, and no old alert awaits a recovery mail."""
    if not 0 <= offline_threshold_seconds <= MAX_THRESHOLD_SECONDS:
        raise Invalid(
            "invalid_offline_threshold",
            f"offline_threshold_seconds must be 0 to {MAX_THRESHOLD_SECONDS} (30 days)",
        )
    if not 0 <= debounce_seconds <= MAX_DEBOUNCE_SECONDS:
        raise Invalid(
            "invalid_debounce", f"debounce_seconds must be 0 to {MAX_DEBOUNCE_SECONDS} (7 days)"
        )
    await _org(session, org_id)
    now = now or utcnow()
    row = await session.get(OrgAlertSettings, org_id)
    if row is None:
        row = OrgAlertSettings(org_id=org_id, enabled=False)
        session.add(row)
    if enabled and not row.enabled:
        row.enabled_at = now
        await session.execute(delete(DeviceAlertState).where(DeviceAlertState.org_id == org_id))
    row.enabled = enabled
    row.offline_threshold_seconds = offline_threshold_seconds
    row.debounce_seconds = debounce_seconds
    row.updated_at = now
    await session.flush()
    return _view(org_id, row)


# --- transitions ----------------------------------------------------------------------------


async def _enabled_settings(session: AsyncSession, org_id: int) -> OrgAlertSettings | None:
    row = await session.get(OrgAlertSettings, org_id)
    return row if row is not None and row.enabled else None


async def _ensure_state(session: AsyncSession, org_id: int, peer_id: str) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(DeviceAlertState)
        .values(org_id=org_id, peer_id=peer_id, alert_open=False, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["org_id", "peer_id"])
    )


def _state(org_id: int, peer_id: str) -> list[ColumnElement[bool]]:
    return [DeviceAlertState.org_id == org_id, DeviceAlertState.peer_id == peer_id]


async def _claim_alert(
    session: AsyncSession, org_id: int, peer_id: str, *, now: datetime, debounce_seconds: int
) -> bool:
    """Open an alert for this device unless one is open or one went out inside the window."""
    window_start = now - timedelta(seconds=debounce_seconds)
    result = await session.execute(
        update(DeviceAlertState)
        .where(
            DeviceAlertState.org_id == org_id,
            DeviceAlertState.peer_id == peer_id,
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


async def _admin_addresses(session: AsyncSession, org_id: int) -> list[str]:
    statement = (
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.org_id == org_id,
            Membership.role.in_([OrgRole.OWNER.value, OrgRole.ADMIN.value]),
            User.is_active.is_(True),
        )
        .order_by(User.id)
    )
    return list((await session.execute(statement)).scalars().all())


async def _mail_admins(
    session: AsyncSession, org_id: int, kind: MailKind, template: str, **context: object
) -> int:
    org = await session.get(Organization, org_id)
    if org is None:
        return 0
    addresses = await _admin_addresses(session, org_id)
    if not addresses:
        logger.warning("org %s: a %s alert has no recipient (no active admin)", org_id, kind)
        return 0
    rendered = render(template, org_name=org.name, **context)
    for address in addresses:
        await outbox.enqueue(session, org_id=org_id, kind=kind.value, to=address, rendered=rendered)
    return len(addresses)


async def _send_offline_alert(
    session: AsyncSession,
    settings: OrgAlertSettings,
    *,
    peer_id: str,
    hostname: str,
    virtual_ip: str,
    reason: str,
    since: datetime,
) -> None:
    await _mail_admins(
        session,
        settings.org_id,
        MailKind.DEVICE_OFFLINE,
        "device_offline",
        peer_id=peer_id,
        hostname=hostname,
        virtual_ip=virtual_ip,
        reason_text=_REASONS.get(reason, reason),
        since=format_time(since),
        debounce=format_duration(timedelta(seconds=settings.debounce_seconds)),
    )


async def on_device_offline(
    session: AsyncSession,
    org_id: int,
    peer_id: str,
    hostname: str,
    virtual_ip: str,
    reason: str,
    at: datetime,
) -> bool:
    """A device went offline (``reason``: ``disconnected`` or ``timeout``); True when an alert
    was queued. Call inside the transition's transaction; it only flushes."""
    settings = await _enabled_settings(session, org_id)
    if settings is None:
        return False
    await _ensure_state(session, org_id, peer_id)
    await session.execute(
        update(DeviceAlertState)
        .where(*_state(org_id, peer_id))
        .values(offline_since=at, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if settings.offline_threshold_seconds > 0:
        return False  # the checker reports it once it has been offline long enough
    if not await _claim_alert(
        session, org_id, peer_id, now=at, debounce_seconds=settings.debounce_seconds
    ):
        return False
    await _send_offline_alert(
        session,
        settings,
        peer_id=peer_id,
        hostname=hostname,
        virtual_ip=virtual_ip,
        reason=reason,
        since=at,
    )
    return True


async def on_device_online(
    session: AsyncSession,
    org_id: int,
    peer_id: str,
    hostname: str,
    virtual_ip: str,
    at: datetime,
) -> bool:
    """A device is back; True when a recovery mail was queued (an offline alert was open).
    Call inside the transition's transaction; it only flushes."""
    settings = await _enabled_settings(session, org_id)
    if settings is None:
        return False
    result = await session.execute(
        update(DeviceAlertState)
        .where(*_state(org_id, peer_id), DeviceAlertState.alert_open.is_(True))
        .values(alert_open=False, updated_at=utcnow())
        .returning(DeviceAlertState.offline_since)
        .execution_options(synchronize_session=False)
    )
    closed = result.one_or_none()
    await session.execute(
        update(DeviceAlertState)
        .where(*_state(org_id, peer_id), DeviceAlertState.offline_since.is_not(None))
        .values(offline_since=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if closed is None:
        return False
    offline_since: datetime | None = closed[0]
    await _mail_admins(
        session,
        org_id,
        MailKind.DEVICE_ONLINE,
        "device_online",
        peer_id=peer_id,
        hostname=hostname,
        virtual_ip=virtual_ip,
        at=format_time(at),
        downtime=format_duration(at - offline_since) if offline_since is not None else None,
    )
    return True


# --- devices offline longer than the threshold -----------------------------------------------


async def check_offline_devices(
    session: AsyncSession, now: datetime | None = None, *, not_before: datetime | None = None
) -> int:
    """Queue the alerts for devices offline longer than their org's threshold (or still
    offline after a debounced alert); the number of devices alerted. Flushes only.

    ``not_before`` starts every offline clock no earlier than that instant: a replica that just
    started counts from its start (plus a grace period), so a server outage is not reported as
    every device being offline before the agents had a chance to reconnect.
    """
    now = now or utcnow()
    enabled = {
        row.org_id: row
        for row in (
            await session.execute(select(OrgAlertSettings).where(OrgAlertSettings.enabled))
        ).scalars()
    }
    if not enabled:
        return 0
    latest = (
        select(
            ConnectionStatus.org_id,
            ConnectionStatus.peer_id,
            func.max(ConnectionStatus.id).label("last_id"),
        )
        .where(ConnectionStatus.org_id.in_(list(enabled)))
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
    alerted = 0
    for connection, hostname, device_seen_at, last_alert_at in await session.execute(statement):
        settings = enabled[connection.org_id]
        since = connection.disconnected_at
        assert since is not None
        if settings.enabled_at is not None and since < settings.enabled_at:
            continue  # offline since before alerts were switched on
        counted_from = max(since, not_before) if not_before is not None else since
        if now - counted_from < timedelta(seconds=settings.offline_threshold_seconds):
            continue
        if device_seen_at is not None and device_seen_at > since:
            continue  # seen after that session ended: it is (or was) back
        window = timedelta(seconds=settings.debounce_seconds)
        if last_alert_at is not None and now - last_alert_at < window:
            continue
        await _ensure_state(session, connection.org_id, connection.peer_id)
        await session.execute(
            update(DeviceAlertState)
            .where(
                *_state(connection.org_id, connection.peer_id),
                DeviceAlertState.offline_since.is_(None),
            )
            .values(offline_since=since, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if not await _claim_alert(
            session,
            connection.org_id,
            connection.peer_id,
            now=now,
            debounce_seconds=settings.debounce_seconds,
        ):
            continue
        await _send_offline_alert(
            session,
            settings,
            peer_id=connection.peer_id,
            hostname=hostname,
            virtual_ip=connection.virtual_ip,
            reason=connection.status,
            since=since,
        )
        alerted += 1
    return alerted


class OfflineAlertChecker(PeriodicWorker):
    """Runs ``check_offline_devices`` every ``interval`` seconds; start/stop from the lifespan."""

    name = "offline-alerts"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        interval: float = DEFAULT_CHECK_INTERVAL,
        startup_grace: float | None = None,
    ) -> None:
        super().__init__(interval)
        self.sessionmaker = sessionmaker
        self.settings = settings
        # Time for agents to reconnect after this replica starts: two heartbeat timeouts.
        self.startup_grace = timedelta(
            seconds=startup_grace if startup_grace is not None else 2 * settings.heartbeat_timeout
        )
        self.started_at: datetime | None = None

    async def start(self) -> None:
        if self.started_at is None:
            self.started_at = utcnow()
        await super().start()

    async def run_once(self, now: datetime | None = None) -> int:
        not_before = self.started_at + self.startup_grace if self.started_at else None
        async with self.sessionmaker() as session:
            alerted = await check_offline_devices(session, now, not_before=not_before)
            await session.commit()
        if alerted:
            logger.info("queued offline alerts for %d device(s)", alerted)
        return alerted
