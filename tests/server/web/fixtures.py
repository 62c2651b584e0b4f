"""Data the page tests share: two orgs, their people, and an enrolled device in each."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_member, make_org, make_user
from tests.server.web.dashboard import PASSWORD
from wiremesh.server.devices import service as devices_service
from wiremesh.server.orgs.models import Organization, OrgRole
from wiremesh.server.users.models import User


@dataclass
class Tenant:
    org: Organization
    owner: User
    member: User
    device_id: int
    credential: str


async def enrolled_device(
    session: AsyncSession, org: Organization, owner: User, hostname: str
) -> tuple[int, str]:
    _key, plaintext = await devices_service.create_setup_key(
        session,
        org.id,
        owner_user_id=owner.id,
        name="test",
        reusable=True,
        usage_limit=None,
        expires_in=None,
    )
    device, _org, credential = await devices_service.enroll(session, plaintext, hostname, None)
    return device.id, credential


async def make_tenant(session: AsyncSession, name: str, network: str) -> Tenant:
    """An org with an owner and a plain member (both with ``PASSWORD``) and one device."""
    org = await make_org(session, name=name, network_cidr=network)
    owner = await make_user(session, email=f"owner@{name}.example.com", password=PASSWORD)
    member = await make_user(session, email=f"member@{name}.example.com", password=PASSWORD)
    await make_member(session, org, owner, OrgRole.OWNER)
    await make_member(session, org, member, OrgRole.MEMBER)
    device_id, credential = await enrolled_device(session, org, owner, f"{name}-laptop")
    return Tenant(org, owner, member, device_id, credential)
