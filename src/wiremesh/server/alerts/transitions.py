"""The alerts side of presence's transition hook: a transition queues the due mail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.alerts import service as alerts
from wiremesh.server.presence.models import ConnectionState
from wiremesh.server.presence.sessions import LiveSession

NOT_A_DEVICE_FAILURE = frozenset(
    {"server_shutdown", "superseded", "revoked", "deleted", "org_deleted", "server_lost"}
)
"""Ends that say nothing about the device's health: the server stopping or lost (the offline
checker covers devices that do not come back), a newer session of the device, an admin's act."""


async def alert_on_transition(
    session: AsyncSession, live: LiveSession, status: ConnectionState, reason: str, at: datetime
) -> None:
    """Inside the transition's own transaction: queue the alert or recovery mail, if due."""
    device = live.device
    if status is ConnectionState.CONNECTED:
        await alerts.on_device_online(
            session, device.org_id, device.peer_id, device.hostname, device.virtual_ip, at
        )
    elif reason not in NOT_A_DEVICE_FAILURE:
        await alerts.on_device_offline(
            session,
            device.org_id,
            device.peer_id,
            device.hostname,
            device.virtual_ip,
            reason,
            at,
        )
