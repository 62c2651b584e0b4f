"""Offline alerts: the org's settings, and what a transition or the checker sends.

Opt-in per org (``org_alert_settings``). The rule (see ``rules``):

- ``offline_threshold_seconds == 0``: the alert goes out when the device goes offline
  (``on_device_offline``, called by presence inside its transition transaction);
- ``offline_threshold_seconds > 0``: ``check_offline_devices`` (run by the worker) looks for
  devices whose latest session ended longer ago than the threshold, and not seen since;
- debounce: at most one offline alert per device per ``debounce_seconds``; a device that
  flaps inside the window is reported once (and again by the checker if it is still offline
  when the window ends);
- recovery: a device with an open alert gets one "back online" mail when it reconnects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.alerts import repository
from wiremesh.server.alerts.models import OrgAlertSettings
from wiremesh.server.alerts.rules import (
    DEFAULT_DEBOUNCE_SECONDS,
    MAX_DEBOUNCE_SECONDS,
    MAX_THRESHOLD_SECONDS,
    AlertPolicy,
    OfflineDevice,
    overdue,
    reason_text,
)
from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import Invalid, NotFound
from wiremesh.server.mail import outbox
from wiremesh.server.mail.models import MailKind
from wiremesh.server.mail.render import format_duration, format_time, render
from wiremesh.server.orgs import repository as orgs_repository
from wiremesh.server.orgs.models import Organization

logger = logging.getLogger("wiremesh.server.alerts")

__all__ = [
    "DEFAULT_DEBOUNCE_SECONDS",
    "AlertSettingsView",
    "check_offline_devices",
    "get_alert_settings",
    "on_device_offline",
    "on_device_online",
    "put_alert_settings",
]


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


def _policy(row: OrgAlertSettings) -> AlertPolicy:
    return AlertPolicy(
        offline_threshold=timedelta(seconds=row.offline_threshold_seconds),
        debounce=timedelta(seconds=row.debounce_seconds),
        enabled_at=row.enabled_at,
    )


async def _require_org(session: AsyncSession, org_id: int) -> None:
    if await session.get(Organization, org_id) is None:
        raise NotFound("organization")


async def get_alert_settings(session: AsyncSession, org_id: int) -> AlertSettingsView:
    await _require_org(session, org_id)
    return _view(org_id, await repository.get_settings(session, org_id))


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
    await _require_org(session, org_id)
    now = now or utcnow()
    row = await repository.get_settings(session, org_id)
    if row is None:
        row = OrgAlertSettings(org_id=org_id, enabled=False)
        session.add(row)
    if enabled and not row.enabled:
        row.enabled_at = now
        await repository.forget_device_states(session, org_id)
    row.enabled = enabled
    row.offline_threshold_seconds = offline_threshold_seconds
    row.debounce_seconds = debounce_seconds
    row.updated_at = now
    await session.flush()
    return _view(org_id, row)


# --- mails --------------------------------------------------------------------------------------


async def _mail_admins(
    session: AsyncSession, org_id: int, kind: MailKind, template: str, **context: object
) -> int:
    org = await session.get(Organization, org_id)
    if org is None:
        return 0
    addresses = await orgs_repository.admin_addresses(session, org_id)
    if not addresses:
        logger.warning("org %s: a %s alert has no recipient (no active admin)", org_id, kind)
        return 0
    rendered = render(template, org_name=org.name, **context)
    for address in addresses:
        await outbox.enqueue(session, org_id=org_id, kind=kind.value, to=address, rendered=rendered)
    return len(addresses)


async def _send_offline_alert(
    session: AsyncSession, settings: OrgAlertSettings, device: OfflineDevice
) -> None:
    await _mail_admins(
        session,
        settings.org_id,
        MailKind.DEVICE_OFFLINE,
        "device_offline",
        peer_id=device.peer_id,
        hostname=device.hostname,
        virtual_ip=device.virtual_ip,
        reason_text=reason_text(device.reason),
        since=format_time(device.offline_since),
        debounce=format_duration(timedelta(seconds=settings.debounce_seconds)),
    )


# --- transitions --------------------------------------------------------------------------------


async def _enabled_settings(session: AsyncSession, org_id: int) -> OrgAlertSettings | None:
    row = await repository.get_settings(session, org_id)
    return row if row is not None and row.enabled else None


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
    policy = _policy(settings)
    await repository.ensure_state(session, org_id, peer_id)
    await repository.mark_offline(session, org_id, peer_id, at, keep_earlier=False)
    if not policy.alerts_at_once:
        return False  # the checker reports it once it has been offline long enough
    if not await repository.claim_alert(
        session, org_id, peer_id, now=at, window_start=policy.window_start(at)
    ):
        return False
    device = OfflineDevice(org_id, peer_id, hostname, virtual_ip, reason, offline_since=at)
    await _send_offline_alert(session, settings, device)
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
    if await _enabled_settings(session, org_id) is None:
        return False
    closed, offline_since = await repository.close_alert(session, org_id, peer_id)
    if not closed:
        return False
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
    enabled = await repository.enabled_settings(session)
    if not enabled:
        return 0
    alerted = 0
    for device in await repository.offline_devices(session, list(enabled)):
        settings = enabled[device.org_id]
        policy = _policy(settings)
        if not overdue(policy, device, now, not_before):
            continue
        await repository.ensure_state(session, device.org_id, device.peer_id)
        await repository.mark_offline(
            session, device.org_id, device.peer_id, device.offline_since, keep_earlier=True
        )
        if not await repository.claim_alert(
            session, device.org_id, device.peer_id, now=now, window_start=policy.window_start(now)
        ):
            continue
        await _send_offline_alert(session, settings, device)
        alerted += 1
    return alerted
