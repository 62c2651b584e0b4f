"""The org a page is about, and the viewer's role in it: ``orgs.service``'s one rule.

A member of another org, or nobody, gets the API's 404 (which org ids exist is not told);
a member on an admin-only page gets 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path

from wiremesh.server.auth.deps import DbSession
from wiremesh.server.orgs import repository as orgs_repository
from wiremesh.server.orgs.models import Organization, OrgRole
from wiremesh.server.orgs.service import require_org_role
from wiremesh.server.tenancy import OrgScope
from wiremesh.server.users.schemas import MAX_DB_ID
from wiremesh.server.web.errors import PageRefusal, as_page_refusal
from wiremesh.server.web.security import CurrentViewer, Viewer

OrgIdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID)]
IdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID)]


@dataclass(frozen=True, slots=True)
class OrgPage:
    viewer: Viewer
    org: Organization
    role: OrgRole

    @property
    def scope(self) -> OrgScope:
        return OrgScope(self.org.id)

    @property
    def can_administer(self) -> bool:
        return self.role.can_administer

    def context(self, section: str) -> dict[str, object]:
        return {"org": self.org, "role": self.role, "section": section, "page": self}


async def _org_page(session: DbSession, viewer: Viewer, org_id: int, *, admin: bool) -> OrgPage:
    with as_page_refusal():
        role = await require_org_role(session, viewer.principal, org_id, admin=admin)
    org = await orgs_repository.get(session, org_id)
    if org is None:
        raise PageRefusal(404, "organization not found")
    viewer.org_id = org.id
    return OrgPage(viewer=viewer, org=org, role=role)


async def org_member_page(org_id: OrgIdPath, session: DbSession, viewer: CurrentViewer) -> OrgPage:
    return await _org_page(session, viewer, org_id, admin=False)


async def org_admin_page(org_id: OrgIdPath, session: DbSession, viewer: CurrentViewer) -> OrgPage:
    return await _org_page(session, viewer, org_id, admin=True)


MemberPage = Annotated[OrgPage, Depends(org_member_page)]
AdminPage = Annotated[OrgPage, Depends(org_admin_page)]
