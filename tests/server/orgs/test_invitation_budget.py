"""Invitations per organization are rate-limited: hit, answered 429 with Retry-After, and
recovered once the budget refills; other organizations and their budgets are unaffected."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.server.mail.helpers import make_world
from tests.server.orgs.test_invitations import configure_global_smtp, invite
from wiremesh.server.config import Settings
from wiremesh.server.orgs.models import OrgInvitation


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Two at once, one more a second."""
    return settings.model_copy(update={"invitation_burst": 2, "invitation_per_hour": 3600.0})


async def test_invitations_have_a_budget_per_org_that_refills(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    await configure_global_smtp(client, world.server_admin)
    for number in range(2):
        sent = await invite(client, world.a.id, world.a.admin, email=f"p{number}@example.org")
        assert sent.status_code == 201, sent.text

    limited = await invite(client, world.a.id, world.a.admin, email="p2@example.org")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "too_many_invitations"
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    invited = select(func.count()).select_from(OrgInvitation)
    assert (await session.execute(invited)).scalar_one() == 2  # nothing was stored
    await session.rollback()  # SQLite: release the write lock the read took

    other = await invite(client, world.b.id, world.b.admin, email="q@example.org")
    assert other.status_code == 201, other.text

    await asyncio.sleep(retry_after)
    again = await invite(client, world.a.id, world.a.admin, email="p2@example.org")
    assert again.status_code == 201, again.text
