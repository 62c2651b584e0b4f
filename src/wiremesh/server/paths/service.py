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
from wiremesh.server.auth.secrets import issue_secret, parse_lookup, secret_matches
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.errors import ApiError, Conflict, NotFound
from wiremesh.server.events import recorder
from wiremesh.server.events.repository import last_event_id
from wiremesh.server.events.schemas import EndpointObserved, Event, RelayChanged
from wiremesh.server.paths import repository
from wiremesh.server.paths.models import Relay, RelayCredential
from wiremesh.server.paths.schemas import PeerPathOut, RelayOut

logger = logging.getLogger("wiremesh.paths")


RELAY_CREDENTIAL_KIND = "wmr"
"""The prefix of a relay credential (``wmr_<lookup>_<random>``)."""


async def authorize_relay(
    session: AsyncSession, global_token: str | None, given: str | None, name: str
) -> None:
    """May the relay that presents ``given`` check in as ``name``? Raises if not.

    A relay's own credential is good for its own name only; the global token for any name
    that has no credential of its own, so that deleting a credential shuts that relay out.
    Both are compared in constant time (the credential by its hash). Reads, never writes.
    """
    if given:
        lookup = parse_lookup(RELAY_CREDENTIAL_KIND, given)
        credential = (
            await repository.credential_by_lookup(session, lookup) if lookup is not None else None
        )
        if credential is not None and secret_matches(given, credential.secret_hash):
            if credential.name != name:
                raise ApiError(
                    403,
                    "relay_name_mismatch",
                    f"this credential is relay {credential.name!r}'s; it cannot check in as "
                    f"{name!r}",
                )
            return
        if global_token and hmac.compare_digest(global_token.encode(), given.encode()):
            if await repository.credential_by_name(session, name) is not None:
                raise ApiError(
                    403,
                    "relay_has_credential",
                    f"relay {name!r} has its own credential; the global relay token cannot "
                    "check in as it",
                )
            return
    if not global_token and not await repository.any_credential(session):
        raise ApiError(
            403,
            "relays_disabled",
            "this server has no relay token configured and no relay credentials",
        )
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


async def add_relay_credential(session: AsyncSession, name: str) -> tuple[RelayCredential, str]:
    """A credential for the relay ``name``; the plaintext is returned once, never stored.

    From now on the global token cannot check in as ``name``: a relay of that name running
    on it is refused at its next check-in and goes off the list with the sweep.
    """
    if await repository.credential_by_name(session, name) is not None:
        raise Conflict(
            "relay_credential_exists",
            f"relay {name!r} already has a credential; remove it first to issue a new one",
        )
    issued = issue_secret(RELAY_CREDENTIAL_KIND)
    credential = RelayCredential(name=name, lookup=issued.lookup, secret_hash=issued.secret_hash)
    session.add(credential)
    await session.flush()
    return credential, issued.plaintext


async def list_relays(session: AsyncSession) -> list[RelayOut]:
    """Every relay that has a credential or has checked in, by name."""
    credentials = {row.name: row for row in await repository.all_credentials(session)}
    relays = {row.name: row for row in await repository.all_relays(session)}
    listed: list[RelayOut] = []
    for name in sorted(credentials.keys() | relays.keys()):
        credential, relay = credentials.get(name), relays.get(name)
        listed.append(
            RelayOut(
                name=name,
                credential="own" if credential is not None else "global",
                online=relay is not None and relay.online,
                endpoint=relay.endpoint if relay is not None and relay.endpoint else None,
                last_seen_at=relay.last_seen_at if relay is not None else None,
                created_at=credential.created_at if credential is not None else None,
            )
        )
    return listed


async def remove_relay(session: AsyncSession, name: str) -> None:
    """Forget the relay ``name``: its credential (it can no longer check in with it) and its
    row; if it is online, it goes off every agent's list with a ``relay_changed`` event.

    A relay on the global token comes back at its next check-in: to keep one out, give it
    a credential of its own and remove that, or change the global token.
    """
    credential = await repository.credential_by_name(session, name)
    relay = await repository.relay_by_name(session, name)
    if credential is None and relay is None:
        raise NotFound(f"relay {name!r}")
    if credential is not None:
        await session.delete(credential)
    if relay is not None:
        if relay.online:
            await recorder.record(
                session,
                RelayChanged(
                    name=relay.name,
                    public_key=relay.public_key,
                    endpoint=relay.endpoint,
                    online=False,
                ),
            )
        await session.delete(relay)
    await session.flush()


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
