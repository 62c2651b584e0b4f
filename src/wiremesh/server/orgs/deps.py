"""FastAPI dependencies for every endpoint under ``/orgs/{org_id}/...``, whatever its domain,
and the tenant scopes they grant.

Use them rather than calling ``require_org_role`` inside the endpoint: a dependency runs
before the request body is validated, so an outsider gets 404/403 and never a 422 that
depends on the org.

    @router.get("/orgs/{org_id}/things")
    async def list_things(org_id: OrgIdPath, role: OrgMember, session: DbSession) -> ...

An endpoint that is the same for one org and for the whole server is written once and
mounted for both with ``include_for_both_scopes``: each mount's scope dependency checks the
caller and builds the scope (``wiremesh.server.tenancy``) the endpoint acts in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from wiremesh.server.auth.deps import CurrentPrincipal, DbSession, ServerAdmin
from wiremesh.server.http_errors import refuses
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.orgs.service import require_org_role
from wiremesh.server.tenancy import SERVER_SCOPE, OrgScope, TenantScope
from wiremesh.server.users.schemas import MAX_DB_ID

OrgIdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="Organization id")]
IdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID)]
OrgFilter = Annotated[int | None, Query(ge=1, le=MAX_DB_ID, description="Only this org")]

ORG_PREFIX = "/orgs/{org_id}"


@refuses(404)
async def org_member(org_id: OrgIdPath, session: DbSession, principal: CurrentPrincipal) -> OrgRole:
    """Any member of the org (or a server administrator); see ``require_org_role``."""
    return await require_org_role(session, principal, org_id, admin=False)


@refuses(403, 404)
async def org_admin(org_id: OrgIdPath, session: DbSession, principal: CurrentPrincipal) -> OrgRole:
    """An owner or admin of the org (or a server administrator); see ``require_org_role``."""
    return await require_org_role(session, principal, org_id, admin=True)


OrgMember = Annotated[OrgRole, Depends(org_member)]
OrgAdmin = Annotated[OrgRole, Depends(org_admin)]


# --- tenant scopes ------------------------------------------------------------------------------

ScopeDependency = Callable[..., Awaitable[TenantScope]]


async def org_member_scope(org_id: OrgIdPath, _role: OrgMember) -> TenantScope:
    """The org's scope, for its members (and server administrators)."""
    return OrgScope(org_id)


async def org_admin_scope(org_id: OrgIdPath, _role: OrgAdmin) -> TenantScope:
    """The org's scope, for its owners and admins (and server administrators)."""
    return OrgScope(org_id)


async def server_scope(_admin: ServerAdmin) -> TenantScope:
    """The server's scope, for server administrators: every org, and the global settings."""
    return SERVER_SCOPE


async def server_scope_or_one_org(_admin: ServerAdmin, org_id: OrgFilter = None) -> TenantScope:
    """For server administrators: every org, or the one org the ``org_id`` query names."""
    return SERVER_SCOPE if org_id is None else OrgScope(org_id)


def include_for_both_scopes(
    parent: APIRouter,
    build: Callable[[ScopeDependency], APIRouter],
    *,
    org: ScopeDependency,
    server: ScopeDependency,
    org_prefix: str = ORG_PREFIX,
    server_prefix: str = "",
) -> None:
    """Mount the endpoints that ``build`` writes once, for a scope dependency: under the org's
    prefix with ``org`` deciding who gets in, and under the server's with ``server``.

    The scope dependency goes into each endpoint's own signature (``scope: TenantScope =
    Depends(scope_of)``), so its parameters, such as the ``org_id`` path, are the route's own
    (documented, and a bad value is a 422 like any other)."""
    parent.include_router(build(org), prefix=org_prefix)
    parent.include_router(build(server), prefix=server_prefix)
