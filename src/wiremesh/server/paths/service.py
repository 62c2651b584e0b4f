"""Relays check in, report what they saw, and are taken off the list when they go silent.

Each change is recorded as an event in the transaction that makes it, so every replica
tells its agents the same relays and the same candidates.
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.protocol import PathsMessage
from wiremesh.protocol.relay import (
    RELAY_TIMEOUT,
    RelayDevice,
    RelayOrg,
    RelaySyncRequest,
    RelaySyncResponse,
)
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.errors import ApiError
from wiremesh.server.events import recorder
from wiremesh.server.events.repository import last_event_id
from wiremesh.server.events.schemas import EndpointObserved, Event, RelayChanged
from wiremesh.server.paths import repository
from wiremesh.server.paths.models import Relay
from wiremesh.server.paths.schemas import PeerPathOut

logger = logging.getLogger("wiremesh.paths")


def check_relay_token(configured: str | None, given: str | None) -> None:
    """Relays present the server's relay token; without one configured, none may sync."""
    if not configured:
        raise ApiError(403, "relays_disabled", "this server has no relay token configured")
    if given is None or not hmac.compare_digest(configured.encode(), given.encode()):
        raise ApiError(401, "bad_relay_token", "the relay token is not accepted")


async def sync(session: AsyncSession, request: RelaySyncRequest) -> RelaySyncResponse:
    """One relay check-in: mark it up (an event if that is news), store what it saw."""
    events: list[Event] = []
    identity = request.relay
    row = await repository.relay_by_name(session, identity.name)
    if row is None:
        row = Relay(name=identity.name, public_key=identity.public_key, endpoint="", online=False)
        session.add(row)
    if not row.online or (row.public_key, row.endpoint) != (
        identity.public_key,
        identity.endpoint,
    ):
        row.public_key, row.endpoint, row.online = identity.public_key, identity.endpoint, True
        events.append(
            RelayChanged(
                name=row.name, public_key=row.public_key, endpoint=row.endpoint, online=True
            )
        )
    row.last_seen_at = utcnow()
    devices = await repository.devices_by_key(
        session, [item.public_key for item in request.observed]
    )
    for item in request.observed:
        device = devices.get(item.public_key)
        if device is None:
            continue  # revoked meanwhile, or not a device: nothing to tell
        if await repository.set_observed(session, device, item.endpoint, identity.name):
            events.append(
                EndpointObserved(
                    org_id=device.org_id,
                    peer_id=device.peer_id,
                    endpoint=item.endpoint,
                    relay=identity.name,
                )
            )
    await session.flush()
    await recorder.record(session, *events)
    version = await last_event_id(session)
    if version == request.version:
        return RelaySyncResponse(version=version)
    orgs, known = await repository.relay_view(session)
    return RelaySyncResponse(
        version=version,
        orgs=[RelayOrg(id=org_id, network=network) for org_id, network in orgs],
        devices=[RelayDevice(public_key=key, virtual_ip=ip) for key, ip in known],
    )


async def take_silent_relays_offline(session: AsyncSession) -> list[str]:
    """Relays that stopped checking in go off the list; the names this call took off."""
    silent_since = utcnow() - timedelta(seconds=RELAY_TIMEOUT)
    taken: list[str] = []
    for row in await repository.stale_relays(session, silent_since):
        if await repository.take_offline(session, row.id, silent_since):
            taken.append(row.name)
            await recorder.record(
                session,
                RelayChanged(
                    name=row.name, public_key=row.public_key, endpoint=row.endpoint, online=False
                ),
            )
    return taken


async def store_report(
    session: AsyncSession, device_id: int, org_id: int, peer_id: str, message: PathsMessage
) -> int:
    """Store one ``paths`` message of a device; how many rows were kept.

    Rows naming anything but another active device of the same org are dropped (an agent
    speaks only for its own org), and nothing is kept for a device revoked meanwhile.
    """
    named = {row.peer_id for row in message.paths}
    known = await repository.active_peer_ids(session, org_id, named | {peer_id})
    if peer_id not in known:
        return 0
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "device_id": device_id,
            "peer_id": row.peer_id,
            "org_id": org_id,
            "path": row.path,
            "endpoint": row.endpoint,
            "last_handshake_at": (
                datetime.fromtimestamp(row.last_handshake, UTC)
                if row.last_handshake is not None
                else None
            ),
            "reported_at": now,
        }
        for row in message.paths
        if row.peer_id in known and row.peer_id != peer_id
    ]
    if message.full:
        await repository.delete_peer_paths_except(
            session, device_id, [row["peer_id"] for row in rows]
        )
    await repository.upsert_peer_paths(session, rows)
    return len(rows)


async def device_paths(session: AsyncSession, device: VirtualIPMapping) -> list[PeerPathOut]:
    """The device's paths to its peers, with handshake ages as of now."""
    now = utcnow()
    return [
        PeerPathOut(
            peer_id=row.peer_id,
            hostname=hostname,
            path=cast(Any, row.path),
            endpoint=row.endpoint,
            last_handshake_at=row.last_handshake_at,
            handshake_age_seconds=(
                max(0.0, (now - row.last_handshake_at).total_seconds())
                if row.last_handshake_at is not None
                else None
            ),
            reported_at=row.reported_at,
        )
        for row, hostname in await repository.device_paths(session, device.id, device.org_id)
    ]
