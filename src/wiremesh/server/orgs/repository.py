"""Organizations and memberships: queries only."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.users.models import User


async def get(
    session: AsyncSession, org_id: int, *, for_update: bool = False
) -> Organization | None:
    """One org; ``for_update`` row-locks it on PostgreSQL (SQLite serializes writers anyway)."""
    statement = select(Organization).where(Organization.id == org_id)
    if for_update and session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def get_by_name(session: AsyncSession, name: str) -> Organization | None:
    statement = select(Organization).where(Organization.name == name)
    return (await session.execute(statement)).scalar_one_or_none()


async def list_page(session: AsyncSession, *, limit: int, offset: int) -> Sequence[Organization]:
    statement = select(Organization).order_by(Organization.id).limit(limit).offset(offset)
    return (await session.execute(statement)).scalars().all()


async def list_page_with_role(
    session: AsyncSession, user_id: int, *, limit: int, offset: int
) -> Sequence[tuple[Organization, str | None]]:
    """Every org, each with ``user_id``'s role there, or None where the user is no member."""
    statement = (
        select(Organization, Membership.role)
        .outerjoin(
            Membership,
            and_(Membership.org_id == Organization.id, Membership.user_id == user_id),
        )
        .order_by(Organization.id)
        .limit(limit)
        .offset(offset)
    )
    return [(first, second) for first, second in await session.execute(statement)]


async def list_page_for_user(
    session: AsyncSession, user_id: int, *, limit: int, offset: int
) -> Sequence[tuple[Organization, str]]:
    """The orgs ``user_id`` belongs to, each with the user's role there."""
    statement = (
        select(Organization, Membership.role)
        .join(Membership, Membership.org_id == Organization.id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.id)
        .limit(limit)
        .offset(offset)
    )
    return [(first, second) for first, second in await session.execute(statement)]


async def networks(session: AsyncSession) -> Sequence[str]:
    return (await session.execute(select(Organization.network_cidr))).scalars().all()


async def delete_org(session: AsyncSession, org_id: int) -> None:
    """Delete the row; the database cascades memberships, devices, keys, settings and history."""
    await session.execute(delete(Organization).where(Organization.id == org_id))


async def get_role(session: AsyncSession, org_id: int, user_id: int) -> str | None:
    statement = select(Membership.role).where(
        Membership.org_id == org_id, Membership.user_id == user_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_member(
    session: AsyncSession, org_id: int, user_id: int
) -> tuple[Membership, User] | None:
    statement = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id, Membership.user_id == user_id)
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    membership, user = row
    return membership, user


async def list_members(
    session: AsyncSession, org_id: int, *, limit: int, offset: int
) -> Sequence[tuple[Membership, User]]:
    statement = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id)
        .order_by(Membership.id)
        .limit(limit)
        .offset(offset)
    )
    return [(first, second) for first, second in await session.execute(statement)]


async def count_owners(session: AsyncSession, org_id: int) -> int:
    statement = (
        select(func.count())
        .select_from(Membership)
        .where(Membership.org_id == org_id, Membership.role == OrgRole.OWNER.value)
    )
    return (await session.execute(statement)).scalar_one()


async def orgs_solely_owned_by(session: AsyncSession, user_id: int) -> Sequence[str]:
    """Names of the orgs whose only owner is ``user_id``."""
    owners = (
        select(Membership.org_id)
        .where(Membership.role == OrgRole.OWNER.value)
        .group_by(Membership.org_id)
        .having(func.count() == 1)
        .subquery()
    )
    statement = (
        select(Organization.name)
        .join(Membership, Membership.org_id == Organization.id)
        .join(owners, owners.c.org_id == Organization.id)
        .where(Membership.user_id == user_id, Membership.role == OrgRole.OWNER.value)
        .order_by(Organization.name)
    )
    return (await session.execute(statement)).scalars().all()


async def delete_membership(session: AsyncSession, membership_id: int) -> None:
    await session.execute(delete(Membership).where(Membership.id == membership_id))


async def admin_addresses(session: AsyncSession, org_id: int) -> list[str]:
    """The e-mail addresses of an org's active owners and admins (alerts, paused mail)."""
    statement = (
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.org_id == org_id,
            Membership.role.in_([OrgRole.OWNER.value, OrgRole.ADMIN.value]),
            User.is_active.is_(True),
        )
        .order_by(User.id)
    )
    return list((await session.execute(statement)).scalars().all())
