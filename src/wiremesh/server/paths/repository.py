"""Queries for relays and device candidates; the callers own the transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.orgs.models import Organization
from wiremesh.server.paths.models import DeviceCandidates, PeerPath, Relay, RelayCredential


async def set_lan(session: AsyncSession, device_id: int, org_id: int, lan: Sequence[str]) -> None:
    """Store the device's own addresses (its agent reports them at every connect).

    One upsert, written only when the list changed: it is on every agent connect's path."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(DeviceCandidates).values(
        device_id=device_id, org_id=org_id, lan=list(lan), updated_at=utcnow()
    )
    statement = statement.on_conflict_do_update(
        index_elements=[DeviceCandidates.device_id],
        set_={"lan": statement.excluded.lan, "updated_at": statement.excluded.updated_at},
        where=cast(DeviceCandidates.lan, Text) != cast(statement.excluded.lan, Text),
    )
    connection = await session.connection()
    await connection.execute(statement)


async def set_observed(
    session: AsyncSession, device: VirtualIPMapping, endpoint: str, relay: str
) -> bool:
    """Store what a relay saw; whether it differs from what was stored (peers must learn)."""
    row = await session.get(DeviceCandidates, device.id)
    if row is None:
        row = DeviceCandidates(device_id=device.id, org_id=device.org_id, lan=[])
        session.add(row)
    elif row.observed == endpoint:
        return False
    row.observed = endpoint
    row.observed_by = relay
    await session.flush()
    return True


async def devices_by_key(
    session: AsyncSession, public_keys: Sequence[str]
) -> dict[str, VirtualIPMapping]:
    """Active devices with these public keys; a key that two organizations' devices share
    (keys are unique per organization only) names neither: a relay sees one WireGuard peer
    per key and cannot tell whose mapping it saw, and a member could otherwise copy another
    organization's key to be told that device's address."""
    if not public_keys:
        return {}
    rows = await session.execute(
        select(VirtualIPMapping).where(
            VirtualIPMapping.public_key.in_(list(public_keys)),
            VirtualIPMapping.revoked_at.is_(None),
        )
    )
    found: dict[str, VirtualIPMapping] = {}
    shared: set[str] = set()
    for row in rows.scalars():
        if row.public_key is None:
            continue
        if row.public_key in found:
            shared.add(row.public_key)
        found[row.public_key] = row
    return {key: row for key, row in found.items() if key not in shared}


async def relay_by_name(session: AsyncSession, name: str) -> Relay | None:
    return (await session.execute(select(Relay).where(Relay.name == name))).scalar_one_or_none()


async def all_relays(session: AsyncSession) -> list[Relay]:
    rows = await session.execute(select(Relay).order_by(Relay.name))
    return list(rows.scalars())


async def credential_by_lookup(session: AsyncSession, lookup: str) -> RelayCredential | None:
    return (
        await session.execute(select(RelayCredential).where(RelayCredential.lookup == lookup))
    ).scalar_one_or_none()


async def credential_by_name(session: AsyncSession, name: str) -> RelayCredential | None:
    return (
        await session.execute(select(RelayCredential).where(RelayCredential.name == name))
    ).scalar_one_or_none()


async def any_credential(session: AsyncSession) -> bool:
    return (await session.execute(select(RelayCredential.id).limit(1))).first() is not None


async def all_credentials(session: AsyncSession) -> list[RelayCredential]:
    rows = await session.execute(select(RelayCredential).order_by(RelayCredential.name))
    return list(rows.scalars())


async def online_relays(session: AsyncSession) -> list[Relay]:
    rows = await session.execute(select(Relay).where(Relay.online).order_by(Relay.name))
    return list(rows.scalars())


async def take_offline(session: AsyncSession, relay_id: int, silent_since: datetime) -> bool:
    """Mark a relay offline if it is still online and silent; whether this call did it (so
    that when several replicas sweep at once, exactly one records the event)."""
    result = await session.execute(
        update(Relay)
        .where(Relay.id == relay_id, Relay.online, Relay.last_seen_at < silent_since)
        .values(online=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def stale_relays(session: AsyncSession, silent_since: datetime) -> list[Relay]:
    rows = await session.execute(
        select(Relay).where(Relay.online, Relay.last_seen_at < silent_since)
    )
    return list(rows.scalars())


async def relay_view(session: AsyncSession) -> tuple[list[tuple[int, str]], list[tuple[str, str]]]:
    """Every org's network and every active device's (public key, virtual IP): what a relay
    must know to forward within each org and nowhere else."""
    orgs = [
        (org_id, network)
        for org_id, network in await session.execute(
            select(Organization.id, Organization.network_cidr).order_by(Organization.id)
        )
    ]
    devices = [
        (key, ip)
        for key, ip in await session.execute(
            select(VirtualIPMapping.public_key, VirtualIPMapping.virtual_ip)
            .where(VirtualIPMapping.revoked_at.is_(None), VirtualIPMapping.public_key.is_not(None))
            .order_by(VirtualIPMapping.id)
        )
        if key
    ]
    return orgs, devices


# --- peer paths (what agents report) ----------------------------------------------------


async def active_peer_ids(
    session: AsyncSession, org_id: int, peer_ids: Collection[str]
) -> set[str]:
    """Which of ``peer_ids`` are active devices of this org: a report names no others."""
    if not peer_ids:
        return set()
    rows = await session.execute(
        select(VirtualIPMapping.peer_id).where(
            VirtualIPMapping.org_id == org_id,
            VirtualIPMapping.peer_id.in_(list(peer_ids)),
            VirtualIPMapping.revoked_at.is_(None),
        )
    )
    return set(rows.scalars())


async def upsert_peer_paths(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace rows of ``peer_path`` (keyed by device and peer) in one statement."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(PeerPath)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[PeerPath.device_id, PeerPath.peer_id],
            set_={
                name: statement.excluded[name]
                for name in ("org_id", "path", "endpoint", "last_handshake_at", "reported_at")
            },
        ),
        list(rows),
    )


async def delete_peer_paths_except(
    session: AsyncSession, device_id: int, keep: Collection[str]
) -> None:
    """Forget the device's rows for peers not in ``keep`` (a full report replaces them)."""
    statement = delete(PeerPath).where(PeerPath.device_id == device_id)
    if keep:
        statement = statement.where(PeerPath.peer_id.not_in(list(keep)))
    await session.execute(statement)


async def forget_device_paths(session: AsyncSession, device: VirtualIPMapping) -> None:
    """A revoked or deleted device: its own rows, and the rows naming it as a peer."""
    await session.execute(
        delete(PeerPath).where(
            or_(
                PeerPath.device_id == device.id,
                (PeerPath.org_id == device.org_id) & (PeerPath.peer_id == device.peer_id),
            )
        )
    )


async def device_paths(
    session: AsyncSession, device_id: int, org_id: int
) -> list[tuple[PeerPath, str]]:
    """The device's rows with each peer's hostname; peers no longer active are left out."""
    rows = await session.execute(
        select(PeerPath, VirtualIPMapping.hostname)
        .join(
            VirtualIPMapping,
            (VirtualIPMapping.org_id == PeerPath.org_id)
            & (VirtualIPMapping.peer_id == PeerPath.peer_id),
        )
        .where(
            PeerPath.device_id == device_id,
            PeerPath.org_id == org_id,
            VirtualIPMapping.revoked_at.is_(None),
        )
        .order_by(VirtualIPMapping.hostname, PeerPath.peer_id)
    )
    return [(row, hostname) for row, hostname in rows]
