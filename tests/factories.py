"""Small factory functions for test data; each flushes, the test decides when to commit."""

from __future__ import annotations

import itertools

from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth.passwords import hash_password
from wiremesh.server.auth.service import create_token
from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.users.models import User

_counter = itertools.count(1)


async def make_user(
    session: AsyncSession,
    *,
    email: str | None = None,
    server_admin: bool = False,
    password: str | None = None,
) -> User:
    number = next(_counter)
    user = User(
        email=email or f"user{number}@example.com",
        name=f"User {number}",
        is_server_admin=server_admin,
        password_hash=None if password is None else hash_password(password),
    )
    session.add(user)
    await session.flush()
    return user


async def make_org(
    session: AsyncSession, *, name: str | None = None, network_cidr: str | None = None
) -> Organization:
    number = next(_counter)
    org = Organization(
        name=name or f"org-{number}",
        network_cidr=network_cidr or f"100.{64 + number % 60}.{number % 250}.0/24",
    )
    session.add(org)
    await session.flush()
    return org


async def make_member(
    session: AsyncSession, org: Organization, user: User, role: OrgRole = OrgRole.MEMBER
) -> Membership:
    membership = Membership(org_id=org.id, user_id=user.id, role=role.value)
    session.add(membership)
    await session.flush()
    return membership


async def make_token(session: AsyncSession, user: User) -> str:
    _token, plaintext = await create_token(session, user, "test")
    return plaintext


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
