"""FastAPI dependencies for every endpoint under ``/orgs/{org_id}/...``, whatever its domain.

Use them rather than calling ``require_org_role`` inside the endpoint: a dependency runs
before the request body is validated, so an outsider gets 404/403 and never a 422 that
depends on the org.

    @router.get("/orgs/{org_id}/things")
    async def list_things(org_id: OrgIdPath, role: OrgMember, session: DbSession) -> ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from wiremesh.server.auth.deps import CurrentPrincipal, DbSession
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.orgs.service import require_org_role
from wiremesh.server.users.schemas import MAX_DB_ID

OrgIdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="Organization id")]
IdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID)]


async def org_member(org_id: OrgIdPath, session: DbSession, principal: CurrentPrincipal) -> OrgRole:
    """Any member of the org (or a server administrator); see ``require_org_role``."""
    return await require_org_role(session, principal, org_id, admin=False)


async def org_admin(org_id: OrgIdPath, session: DbSession, principal: CurrentPrincipal) -> OrgRole:
    """An owner or admin of the org (or a server administrator); see ``require_org_role``."""
    return await require_org_role(session, principal, org_id, admin=True)


OrgMember = Annotated[OrgRole, Depends(org_member)]
OrgAdmin = Annotated[OrgRole, Depends(org_admin)]
