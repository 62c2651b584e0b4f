"""Concurrent writers: networks never overlap and an org never loses its last owner."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_member, make_org, make_user
from wiremesh.server.auth.principal import Principal
from wiremesh.server.config import Settings
from wiremesh.server.errors import ApiError
from wiremesh.server.orgs import service
from wiremesh.server.orgs.models import Membership, Organization, OrgRole


async def test_concurrent_creations_get_distinct_networks(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async def create(number: int) -> None:
        async with sessionmaker() as session:
            await service.create_org(session, settings, name=f"org-{number}")
            await asyncio.sleep(0.01)  # hold the transaction open while others try
            await session.commit()

    await asyncio.gather(*(create(number) for number in range(8)))
    async with sessionmaker() as session:
        cidrs = (await session.execute(select(Organization.network_cidr))).scalars().all()
    networks = [ipaddress.IPv4Network(cidr) for cidr in cidrs]
    assert len(networks) == 8
    for first, second in itertools.combinations(networks, 2):
        assert not first.overlaps(second), (first, second)


async def test_two_owners_demoting_each_other_leave_one_owner(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org = await make_org(session)
    first, second = await make_user(session), await make_user(session)
    await make_member(session, org, first, OrgRole.OWNER)
    await make_member(session, org, second, OrgRole.OWNER)
    await session.commit()

    async def demote(actor: int, target: int) -> str:
        async with sessionmaker() as work:
            who = Principal(user_id=actor, is_server_admin=False, token_id=1)
            try:
                await service.change_role(work, who, org.id, target, OrgRole.MEMBER)
                await asyncio.sleep(0.01)
                await work.commit()
            except ApiError as exc:
                return exc.code
            return "ok"

    outcomes = await asyncio.gather(demote(first.id, second.id), demote(second.id, first.id))
    assert sorted(outcomes) in (["last_owner", "ok"], ["forbidden", "ok"])
    async with sessionmaker() as check:
        owners = (
            await check.execute(
                select(func.count())
                .select_from(Membership)
                .where(Membership.org_id == org.id, Membership.role == OrgRole.OWNER.value)
            )
        ).scalar_one()
    assert owners == 1
