"""Users service: creation, bootstrap and deletion rules."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_member, make_org, make_user
from wiremesh.server.auth.models import ApiToken
from wiremesh.server.auth.principal import operator_principal
from wiremesh.server.auth.service import authenticate_token
from wiremesh.server.errors import ApiError
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.users import service
from wiremesh.server.users.models import User


async def user_count(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(User))).scalar_one()


async def test_create_normalizes_and_refuses_duplicates(session: AsyncSession) -> None:
    user = await service.create_user(session, email=" Ann@Example.com ", name=" Ann ")
    assert (user.email, user.name, user.is_server_admin) == ("ann@example.com", "Ann", False)
    with pytest.raises(ApiError) as info:
        await service.create_user(session, email="ANN@example.com", name="Other")
    assert info.value.code == "email_taken"
    assert (await service.get_user_by_email(session, "ann@EXAMPLE.com")).id == user.id


async def test_bootstrap_creates_one_admin_with_a_working_token(session: AsyncSession) -> None:
    user, token = await service.bootstrap_admin(session)
    assert (user.email, user.is_server_admin) == (service.DEFAULT_ADMIN_EMAIL, True)
    _token, authenticated = await authenticate_token(session, token)
    assert authenticated.id == user.id
    with pytest.raises(ApiError) as info:
        await service.bootstrap_admin(session, email="second@example.com")
    assert info.value.code == "already_bootstrapped"
    assert await user_count(session) == 1


async def test_bootstrap_runs_when_only_ordinary_users_exist(session: AsyncSession) -> None:
    await make_user(session)
    user, _token = await service.bootstrap_admin(session, email="root@example.com", name="Root")
    assert user.is_server_admin


async def test_bootstrap_if_empty_only_on_an_empty_database(session: AsyncSession) -> None:
    created = await service.bootstrap_if_empty(session)
    assert created is not None
    assert await service.bootstrap_if_empty(session) is None
    assert await user_count(session) == 1


async def test_bootstrap_if_empty_leaves_existing_users_alone(session: AsyncSession) -> None:
    await make_user(session)
    assert await service.bootstrap_if_empty(session) is None
    tokens = (await session.execute(select(func.count()).select_from(ApiToken))).scalar_one()
    assert tokens == 0


async def test_last_server_admin_cannot_be_deleted(session: AsyncSession) -> None:
    admin = await make_user(session, server_admin=True)
    with pytest.raises(ApiError) as info:
        await service.delete_user(session, operator_principal(), admin.id)
    assert info.value.code == "last_server_admin"
    second = await make_user(session, server_admin=True)
    await service.delete_user(session, operator_principal(), second.id)
    assert await user_count(session) == 1


async def test_delete_takes_memberships_but_keeps_co_owned_orgs(session: AsyncSession) -> None:
    org = await make_org(session)
    first, second = await make_user(session), await make_user(session)
    await make_member(session, org, first, OrgRole.OWNER)
    await make_member(session, org, second, OrgRole.OWNER)
    await service.delete_user(session, operator_principal(), first.id)
    with pytest.raises(ApiError) as info:
        await service.delete_user(session, operator_principal(), second.id)
    assert info.value.code == "last_owner"
