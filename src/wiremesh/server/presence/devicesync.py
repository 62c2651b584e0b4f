"""The safety net behind events: sessions whose device is revoked or deleted in the database.

Revocations and deletions reach every replica as events within a second. Should one be
missed (its event pruned before a replica read it), this check, every
``device_sync_interval``, still closes the session and drops the peer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wiremesh.protocol import CloseCode
from wiremesh.server.presence import repository
from wiremesh.server.presence.models import ConnectionState

if TYPE_CHECKING:
    from wiremesh.server.presence.hub import PresenceHub

DEVICE_SYNC_CHUNK = 500
"""Devices per statement: keeps each parameter list within what every backend accepts."""


async def close_sessions_of_removed_devices(hub: PresenceHub) -> int:
    """Close this replica's sessions of devices that are revoked or gone; how many."""
    live_ids = list(hub.registry.by_device)
    if not live_ids:
        return 0
    valid: set[int] = set()
    async with hub.sessionmaker() as session:  # one read transaction however many agents
        for start in range(0, len(live_ids), DEVICE_SYNC_CHUNK):
            valid |= await repository.active_device_ids(
                session, live_ids[start : start + DEVICE_SYNC_CHUNK]
            )
    closed = 0
    for device_id in live_ids:
        live = hub.registry.by_device.get(device_id)
        if device_id in valid or live is None:
            continue
        await hub.end_session(
            live,
            ConnectionState.DISCONNECTED,
            "revoked",
            CloseCode.DEVICE_REVOKED,
            close_transport=True,
        )
        roster = hub.directory.rosters.get(live.device.org_id)
        change = roster.remove_device(live.device.peer_id) if roster else None
        if change is not None:
            hub.fanout.queue(live.device.org_id, change)
        closed += 1
    return closed
