"""Virtual IP allocation: the lowest free host address of an organization's network."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.errors import Conflict
from wiremesh.server.orgs.models import Organization


async def lock_org_network(session: AsyncSession, org_id: int) -> Organization:
    """Serialize allocations in one org: a row lock on PostgreSQL.

    SQLite needs none: every transaction there starts with BEGIN IMMEDIATE, which already
    admits one writer at a time.
    """
    statement = select(Organization).where(Organization.id == org_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one()


def first_free_address(network_cidr: str, taken: set[str]) -> str | None:
    """The lowest usable host address not in ``taken``; network and broadcast never count."""
    network = ipaddress.ip_network(network_cidr)
    for address in network.hosts():
        text = str(address)
        if text not in taken:
            return text
    return None


async def allocate_virtual_ip(session: AsyncSession, org: Organization) -> str:
    """A free address of the org's network; call with the org locked (lock_org_network)."""
    taken = set(
        (
            await session.execute(
                select(VirtualIPMapping.virtual_ip).where(VirtualIPMapping.org_id == org.id)
            )
        ).scalars()
    )
    address = first_free_address(org.network_cidr, taken)
    if address is None:
        raise Conflict(
            "network_full",
            f"the network {org.network_cidr} of organization {org.name!r} has no free address",
        )
    return address
