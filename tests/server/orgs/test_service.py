"""Orgs service: the access rule, network allocation and the owner rules."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_member, make_org, make_user
from wiremesh.server.auth.principal import Principal, operator_principal
from wiremesh.server.config import Settings
from wiremesh.server.errors import ApiError
from wiremesh.server.orgs import service
from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.users.models import User


def principal(user: User) -> Principal:
    return Principal(user_id=user.id, is_server_admin=user.is_server_admin, token_id=1)


async def assert_refused(code: str, status: int, awaitable: object) -> None:
    with pytest.raises(ApiError) as info:
        await awaitable  # type: ignore[misc]
    assert (info.value.status, info.value.code) == (status, code)


# --- require_org_role ---


async def test_members_get_their_role_and_only_admins_pass_admin_checks(
    session: AsyncSession,
) -> None:
    org = await make_org(session)
    roles = {}
    for role in OrgRole:
        user = await make_user(session)
        await make_member(session, org, user, role)
        roles[role] = principal(user)
    for role, who in roles.items():
        assert await service.require_org_role(session, who, org.id, admin=False) is role
    assert await service.require_org_role(session, roles[OrgRole.OWNER], org.id, admin=True) is (
        OrgRole.OWNER
    )
    assert await service.require_org_role(session, roles[OrgRole.ADMIN], org.id, admin=True) is (
        OrgRole.ADMIN
    )
    await assert_refused(
        "forbidden",
        403,
        service.require_org_role(session, roles[OrgRole.MEMBER], org.id, admin=True),
    )


async def test_outsiders_get_not_found_for_existing_and_missing_orgs(session: AsyncSession) -> None:
    org = await make_org(session)
    other_org = await make_org(session)
    outsider = await make_user(session)
    await make_member(session, other_org, outsider, OrgRole.OWNER)
    for org_id in (org.id, org.id + 1000):
        for admin in (False, True):
            await assert_refused(
                "not_found",
                404,
                service.require_org_role(session, principal(outsider), org_id, admin=admin),
            )


async def test_server_admins_act_as_owner_but_not_on_missing_orgs(session: AsyncSession) -> None:
    org = await make_org(session)
    admin = await make_user(session, server_admin=True)
    assert await service.require_org_role(session, principal(admin), org.id, admin=True) is (
        OrgRole.OWNER
    )
    member_admin = await make_user(session, server_admin=True)
    await make_member(session, org, member_admin, OrgRole.MEMBER)
    assert await service.require_org_role(session, principal(member_admin), org.id, admin=True) is (
        OrgRole.OWNER
    )
    await assert_refused(
        "not_found",
        404,
        service.require_org_role(session, operator_principal(), org.id + 1000, admin=False),
    )


# --- create ---


async def test_orgs_get_consecutive_free_networks(
    session: AsyncSession, settings: Settings
) -> None:
    first = await service.create_org(session, settings, name="one")
    second = await service.create_org(session, settings, name="two")
    chosen = await service.create_org(
        session, settings, name="three", network_cidr="100.64.48.0/24"
    )
    fourth = await service.create_org(session, settings, name="four")
    assert [first.network_cidr, second.network_cidr, chosen.network_cidr, fourth.network_cidr] == [
        "100.64.0.0/20",
        "100.64.16.0/20",
        "100.64.48.0/24",
        "100.64.32.0/20",
    ]
    fifth = await service.create_org(session, settings, name="five")
    assert fifth.network_cidr == "100.64.64.0/20"


async def test_overlapping_network_is_refused(session: AsyncSession, settings: Settings) -> None:
    await service.create_org(session, settings, name="one", network_cidr="100.64.0.0/16")
    await assert_refused(
        "network_overlap",
        409,
        service.create_org(session, settings, name="two", network_cidr="100.64.200.0/24"),
    )
    await assert_refused(
        "network_overlap",
        409,
        service.create_org(session, settings, name="three", network_cidr="100.64.0.0/12"),
    )


async def test_an_exhausted_pool_is_a_clear_conflict(
    session: AsyncSession, settings: Settings
) -> None:
    tight = settings.model_copy(
        update={"default_network_pool": "100.64.0.0/23", "default_org_prefix": 24}
    )
    await service.create_org(session, tight, name="one")
    await service.create_org(session, tight, name="two")
    await assert_refused(
        "network_pool_exhausted", 409, service.create_org(session, tight, name="three")
    )


async def test_duplicate_name_is_refused(session: AsyncSession, settings: Settings) -> None:
    await service.create_org(session, settings, name="acme")
    await assert_refused("org_name_taken", 409, service.create_org(session, settings, name="acme"))
    count = (await session.execute(select(func.count()).select_from(Organization))).scalar_one()
    assert count == 1


async def test_an_owner_can_be_named_at_creation(session: AsyncSession, settings: Settings) -> None:
    user = await make_user(session)
    org = await service.create_org(session, settings, name="acme", owner_user_id=user.id)
    assert await service.require_org_role(session, principal(user), org.id, admin=True) is (
        OrgRole.OWNER
    )
    await assert_refused(
        "not_found", 404, service.create_org(session, settings, name="b", owner_user_id=999999)
    )


# --- list, rename, delete, resolve ---


async def test_list_shows_members_their_orgs_and_admins_all(
    session: AsyncSession, settings: Settings
) -> None:
    mine = await make_org(session)
    await make_org(session)
    user = await make_user(session)
    await make_member(session, mine, user, OrgRole.ADMIN)
    assert [(org.id, role) for org, role in await service.list_orgs(session, principal(user))] == [
        (mine.id, OrgRole.ADMIN)
    ]
    assert len(await service.list_orgs(session, operator_principal())) == 2
    assert len(await service.list_orgs(session, operator_principal(), limit=1, offset=1)) == 1


async def test_rename_needs_a_server_admin_and_a_free_name(session: AsyncSession) -> None:
    org = await make_org(session, name="acme")
    await make_org(session, name="taken")
    member = await make_user(session)
    await make_member(session, org, member, OrgRole.MEMBER)
    owner = await make_user(session)
    await make_member(session, org, owner, OrgRole.OWNER)
    await assert_refused(
        "forbidden", 403, service.rename_org(session, principal(member), org.id, "x")
    )
    for name in ("taken", "free"):
        await assert_refused(
            "forbidden", 403, service.rename_org(session, principal(owner), org.id, name)
        )
    await assert_refused(
        "org_name_taken", 409, service.rename_org(session, operator_principal(), org.id, "taken")
    )
    renamed, _role = await service.rename_org(session, operator_principal(), org.id, "acme-two")
    assert renamed.name == "acme-two"
    same, _role = await service.rename_org(session, operator_principal(), org.id, "acme-two")
    assert same.name == "acme-two"


async def test_delete_needs_a_server_admin_and_takes_the_members_along(
    session: AsyncSession,
) -> None:
    org = await make_org(session)
    owner = await make_user(session)
    await make_member(session, org, owner, OrgRole.OWNER)
    await assert_refused("forbidden", 403, service.delete_org(session, principal(owner), org.id))
    await service.delete_org(session, operator_principal(), org.id)
    assert await session.get(Organization, org.id) is None
    memberships = (await session.execute(select(func.count()).select_from(Membership))).scalar_one()
    assert memberships == 0
    assert await session.get(User, owner.id) is not None
    await assert_refused(
        "not_found", 404, service.delete_org(session, operator_principal(), org.id)
    )


async def test_resolve_by_id_or_name(session: AsyncSession) -> None:
    org = await make_org(session, name="acme")
    assert (await service.resolve_org(session, str(org.id))).id == org.id
    assert (await service.resolve_org(session, " ACME ")).id == org.id
    for ref in ("nope", "0", "999999", "9999999999", "9" * 40, ""):
        await assert_refused("not_found", 404, service.resolve_org(session, ref))


# --- members ---


async def test_only_server_admins_add_members_directly(session: AsyncSession) -> None:
    org = await make_org(session)
    owner, admin, member, newcomer = [await make_user(session) for _ in range(4)]
    await make_member(session, org, owner, OrgRole.OWNER)
    await make_member(session, org, admin, OrgRole.ADMIN)
    await make_member(session, org, member, OrgRole.MEMBER)
    await assert_refused(
        "forbidden",
        403,
        service.add_member(
            session, principal(member), org.id, role=OrgRole.MEMBER, user_id=newcomer.id
        ),
    )
    for caller, role in ((admin, OrgRole.MEMBER), (admin, OrgRole.OWNER), (owner, OrgRole.OWNER)):
        await assert_refused(
            "invitation_required",
            403,
            service.add_member(session, principal(caller), org.id, role=role, user_id=newcomer.id),
        )
    membership, user = await service.add_member(
        session, operator_principal(), org.id, role=OrgRole.ADMIN, email=newcomer.email.upper()
    )
    assert (membership.role, user.id) == ("admin", newcomer.id)
    await assert_refused(
        "already_member",
        409,
        service.add_member(
            session, operator_principal(), org.id, role=OrgRole.OWNER, user_id=newcomer.id
        ),
    )


async def test_only_owners_grant_or_revoke_owner(session: AsyncSession) -> None:
    org = await make_org(session)
    owner, admin, other = [await make_user(session) for _ in range(3)]
    await make_member(session, org, owner, OrgRole.OWNER)
    await make_member(session, org, admin, OrgRole.ADMIN)
    await make_member(session, org, other, OrgRole.MEMBER)
    await assert_refused(
        "forbidden",
        403,
        service.change_role(session, principal(admin), org.id, other.id, OrgRole.OWNER),
    )
    await assert_refused(
        "forbidden",
        403,
        service.change_role(session, principal(admin), org.id, owner.id, OrgRole.MEMBER),
    )
    membership, _user = await service.change_role(
        session, principal(admin), org.id, other.id, OrgRole.ADMIN
    )
    assert membership.role == "admin"
    membership, _user = await service.change_role(
        session, principal(owner), org.id, other.id, OrgRole.OWNER
    )
    assert membership.role == "owner"
    membership, _user = await service.change_role(
        session, principal(owner), org.id, owner.id, OrgRole.MEMBER
    )
    assert membership.role == "member"


async def test_the_last_owner_cannot_be_demoted_or_removed(session: AsyncSession) -> None:
    org = await make_org(session)
    owner = await make_user(session)
    await make_member(session, org, owner, OrgRole.OWNER)
    for who in (principal(owner), operator_principal()):
        await assert_refused(
            "last_owner", 409, service.change_role(session, who, org.id, owner.id, OrgRole.ADMIN)
        )
        await assert_refused(
            "last_owner", 409, service.remove_member(session, who, org.id, owner.id)
        )
    # promoting an owner to owner is not a demotion
    membership, _user = await service.change_role(
        session, principal(owner), org.id, owner.id, OrgRole.OWNER
    )
    assert membership.role == "owner"


async def test_removal_rules(session: AsyncSession) -> None:
    org = await make_org(session)
    owner, second_owner, admin, member, other = [await make_user(session) for _ in range(5)]
    await make_member(session, org, owner, OrgRole.OWNER)
    await make_member(session, org, second_owner, OrgRole.OWNER)
    await make_member(session, org, admin, OrgRole.ADMIN)
    await make_member(session, org, member, OrgRole.MEMBER)
    await make_member(session, org, other, OrgRole.MEMBER)
    await assert_refused(
        "forbidden", 403, service.remove_member(session, principal(member), org.id, other.id)
    )
    await assert_refused(
        "forbidden", 403, service.remove_member(session, principal(admin), org.id, owner.id)
    )
    await assert_refused(
        "not_found", 404, service.remove_member(session, principal(admin), org.id, 999999)
    )
    await service.remove_member(session, principal(admin), org.id, other.id)
    await service.remove_member(session, principal(member), org.id, member.id)  # leaving
    await service.remove_member(session, principal(owner), org.id, second_owner.id)
    members = await service.list_members(session, principal(owner), org.id)
    assert sorted(user.id for _m, user in members) == sorted([owner.id, admin.id])
    await assert_refused("not_found", 404, service.list_members(session, principal(member), org.id))
