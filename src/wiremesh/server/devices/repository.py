"""Queries for devices and setup keys; every query is scoped to one organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.devices.models import SetupKey, VirtualIPMapping
from wiremesh.server.orgs.models import Organization


async def get_device(session: AsyncSession, org_id: int, device_id: int) -> VirtualIPMapping | None:
    return (
        await session.execute(
            select(VirtualIPMapping).where(
                VirtualIPMapping.org_id == org_id, VirtualIPMapping.id == device_id
            )
        )
    ).scalar_one_or_none()


async def get_device_by_lookup(session: AsyncSession, lookup: str) -> VirtualIPMapping | None:
    return (
        await session.execute(
            select(VirtualIPMapping).where(VirtualIPMapping.credential_lookup == lookup)
        )
    ).scalar_one_or_none()


class AgentCredential(NamedTuple):
    """What an agent's connect needs of its device and org, read in one statement."""

    id: int
    org_id: int
    user_id: int
    peer_id: str
    virtual_ip: str
    hostname: str
    public_key: str | None
    credential_hash: str
    revoked_at: datetime | None
    network_cidr: str


_device_table = VirtualIPMapping.__table__
_org_table = Organization.__table__
_agent_credential_query = (
    select(
        *(_device_table.c[name] for name in AgentCredential._fields[:-1]),
        _org_table.c.network_cidr,
    )
    .join_from(_device_table, _org_table, _org_table.c.id == _device_table.c.org_id)
    .where(_device_table.c.credential_lookup == bindparam("lookup"))
)


async def get_agent_credential(session: AsyncSession, lookup: str) -> AgentCredential | None:
    """Core, not ORM: every agent connect runs it, and a reconnect storm runs it thousands
    of times a second; the org's network comes along so no second query is needed.

    On PostgreSQL the read runs outside a transaction: one round trip instead of BEGIN,
    SELECT, ROLLBACK. So it must be the first statement of its session."""
    autocommit = session.get_bind().dialect.name == "postgresql"
    connection = await session.connection(
        execution_options={"isolation_level": "AUTOCOMMIT"} if autocommit else None
    )
    row = (await connection.execute(_agent_credential_query, {"lookup": lookup})).first()
    return AgentCredential._make(row) if row is not None else None


async def list_devices(session: AsyncSession, org_id: int) -> Sequence[VirtualIPMapping]:
    return (
        (
            await session.execute(
                select(VirtualIPMapping)
                .where(VirtualIPMapping.org_id == org_id)
                .order_by(VirtualIPMapping.id)
            )
        )
        .scalars()
        .all()
    )


async def list_active_devices(session: AsyncSession, org_id: int) -> Sequence[VirtualIPMapping]:
    return (
        (
            await session.execute(
                select(VirtualIPMapping)
                .where(VirtualIPMapping.org_id == org_id, VirtualIPMapping.revoked_at.is_(None))
                .order_by(VirtualIPMapping.id)
            )
        )
        .scalars()
        .all()
    )


async def peer_id_taken(session: AsyncSession, org_id: int, peer_id: str) -> bool:
    found = await session.execute(
        select(VirtualIPMapping.id).where(
            VirtualIPMapping.org_id == org_id, VirtualIPMapping.peer_id == peer_id
        )
    )
    return found.first() is not None


async def get_setup_key(session: AsyncSession, org_id: int, key_id: int) -> SetupKey | None:
    return (
        await session.execute(
            select(SetupKey).where(SetupKey.org_id == org_id, SetupKey.id == key_id)
        )
    ).scalar_one_or_none()


async def get_setup_key_by_lookup(session: AsyncSession, lookup: str) -> SetupKey | None:
    return (
        await session.execute(select(SetupKey).where(SetupKey.lookup == lookup))
    ).scalar_one_or_none()


async def list_setup_keys(session: AsyncSession, org_id: int) -> Sequence[SetupKey]:
    return (
        (
            await session.execute(
                select(SetupKey).where(SetupKey.org_id == org_id).order_by(SetupKey.id)
            )
        )
        .scalars()
        .all()
    )


async def consume_setup_key_use(session: AsyncSession, key_id: int) -> bool:
    """Count one use, atomically refusing it when the limit is already reached."""
    result = await session.execute(
        update(SetupKey)
        .where(
            SetupKey.id == key_id,
            (SetupKey.usage_limit.is_(None)) | (SetupKey.used_count < SetupKey.usage_limit),
        )
        .values(used_count=SetupKey.used_count + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
