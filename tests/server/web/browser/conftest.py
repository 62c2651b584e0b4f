"""The dashboard in a real headless Chromium against a real ``wiremesh server`` process.

Skipped when Chromium (the Debian package) or Playwright is missing; CI installs both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytest.importorskip("playwright.async_api", reason="the browser tests need Playwright")

from playwright.async_api import Browser

from tests.factories import make_member, make_user
from tests.server.web.dashboard import PASSWORD
from tests.server.web.fixtures import Tenant, make_tenant
from tests.support.chromium import chromium_path, launch_chromium
from tests.support.deployment import Deployment, StartDeployment
from wiremesh.server.orgs.models import Organization, OrgRole

TIMEOUT_MS = 30_000
"""How long a page may take to show what a test waits for, on a loaded machine."""


@pytest.fixture
def backend() -> str:
    """SQLite only: the pages run the same queries as the API tests, which cover PostgreSQL;
    a browser per backend would double the slowest tests for no new path."""
    return "sqlite"


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    async with launch_chromium(executable) as browser:
        yield browser


@dataclass
class Dashboard:
    deployment: Deployment
    owner_email: str
    member_email: str
    other: Tenant

    @property
    def url(self) -> str:
        return self.deployment.server.url

    @property
    def org_id(self) -> int:
        return self.deployment.org_id


async def _people(
    sessionmaker: async_sessionmaker[AsyncSession], org_id: int
) -> tuple[str, str, Tenant]:
    """An owner and a member of the deployment's org (neither a server administrator), and
    another org with a device of its own."""
    async with sessionmaker() as session:
        org = await session.get(Organization, org_id)
        assert org is not None
        owner = await make_user(session, email="owner@example.com", password=PASSWORD)
        member = await make_user(session, email="member@example.com", password=PASSWORD)
        await make_member(session, org, owner, OrgRole.OWNER)
        await make_member(session, org, member, OrgRole.MEMBER)
        other = await make_tenant(session, "elsewhere", "100.64.9.0/24")
        await session.commit()
        return owner.email, member.email, other


@pytest.fixture
async def dashboard(start_deployment: StartDeployment) -> Dashboard:
    deployment = await start_deployment(
        env={
            "WIREMESH_SMTP_ALLOW_PRIVATE_HOSTS": "true",
            "WIREMESH_MAIL_POLL_INTERVAL": "0.2",
        }
    )
    owner, member, other = await _people(deployment.sessionmaker, deployment.org_id)
    return Dashboard(deployment, owner, member, other)
