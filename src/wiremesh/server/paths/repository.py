"""Queries for relays and device candidates; the callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.orgs.models import Organization
from wiremesh.server.paths.models import DeviceCandidates, Relay


async def set_lan(session: AsyncSession, device_id: int, org_id: int, lan: Sequence[str]) -> None:
    """Store the device's own addresses (its agent reports them at every connect)."""
    row = await session.get(DeviceCandidates, device_id)
    if row is None:
        session.add(DeviceCandidates(device_id=device_id, org_id=org_id, lan=list(lan)))
    elif list(row.lan) != list(lan):
        row.lan = list(lan)
    await session.flush()


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
    """Active devices with these public keys."""
    if not public_keys:
        return {}
    rows = await session.execute(
        select(VirtualIPMapping).where(
            VirtualIPMapping.public_key.in_(list(public_keys)),
            VirtualIPMapping.revoked_at.is_(None),
        )
    )
    return {row.public_key: row for row in rows.scalars() if row.public_key}


async def relay_by_name(session: AsyncSession, name: str) -> Relay | None:
    return (await session.execute(select(Relay).where(Relay.name == name))).scalar_one_or_none()


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
