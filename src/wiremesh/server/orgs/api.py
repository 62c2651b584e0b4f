"""HTTP endpoints of the orgs domain: organizations, their members and invitations."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from wiremesh.server.auth.deps import (
    CurrentPrincipal,
    DbSession,
    ServerAdmin,
    State,
    require_json_body,
)
from wiremesh.server.http_errors import error_responses
from wiremesh.server.orgs import invitations, service
from wiremesh.server.orgs.deps import IdPath, OrgAdmin, OrgIdPath, OrgMember
from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.orgs.schemas import (
    InvitationAcceptIn,
    InvitationAcceptOut,
    InvitationIn,
    InvitationOut,
    MemberAdd,
    MemberOut,
    MemberUpdate,
    OrgCreate,
    OrgOut,
    OrgUpdate,
)
from wiremesh.server.users.models import User

router = APIRouter(dependencies=[Depends(require_json_body)])

Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many items")]
Offset = Annotated[int, Query(ge=0, le=2_147_483_647, description="Skip this many items")]


def _org_out(org: Organization, role: OrgRole | None) -> OrgOut:
    return OrgOut(
        id=org.id,
        name=org.name,
        network_cidr=org.network_cidr,
        created_at=org.created_at,
        role=role,
    )


def _member_out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=OrgRole(membership.role),
        joined_at=membership.created_at,
    )


@router.post(
    "/orgs",
    tags=["orgs"],
    summary="Create an organization (server administrator)",
    status_code=status.HTTP_201_CREATED,
    response_model=OrgOut,
    responses=error_responses(404, 409),
)
async def create_org(
    body: OrgCreate, session: DbSession, principal: ServerAdmin, state: State
) -> OrgOut:
    org = await service.create_org(
        session,
        state.settings,
        name=body.name,
        network_cidr=body.network_cidr,
        owner_user_id=body.owner_user_id,
    )
    await session.commit()
    # Only the owner named in the body is a member: a server administrator who did not
    # name themselves has no role in the new org.
    return _org_out(org, OrgRole.OWNER if body.owner_user_id == principal.user_id else None)


@router.get(
    "/orgs",
    tags=["orgs"],
    summary="List organizations: all for server administrators, else the caller's",
    response_model=list[OrgOut],
)
async def list_orgs(
    session: DbSession, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> list[OrgOut]:
    rows = await service.list_orgs(session, principal, limit=limit, offset=offset)
    return [_org_out(org, role) for org, role in rows]


@router.get("/orgs/{org_id}", tags=["orgs"], summary="Show an organization", response_model=OrgOut)
async def get_org(
    org_id: OrgIdPath, _role: OrgMember, session: DbSession, principal: CurrentPrincipal
) -> OrgOut:
    org, role = await service.get_org(session, principal, org_id)
    return _org_out(org, role)


@router.patch(
    "/orgs/{org_id}",
    tags=["orgs"],
    summary="Rename an organization (server administrator)",
    response_model=OrgOut,
    responses=error_responses(409),
)
async def rename_org(
    org_id: OrgIdPath,
    body: OrgUpdate,
    _role: OrgAdmin,
    session: DbSession,
    principal: CurrentPrincipal,
) -> OrgOut:
    org, role = await service.rename_org(session, principal, org_id, body.name)
    await session.commit()
    return _org_out(org, role)


@router.delete(
    "/orgs/{org_id}",
    tags=["orgs"],
    summary="Delete an organization with its members, devices and history (server administrator)",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def delete_org(org_id: OrgIdPath, session: DbSession, principal: ServerAdmin) -> Response:
    await service.delete_org(session, principal, org_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/orgs/{org_id}/members",
    tags=["members"],
    summary="List the members of an organization (any member)",
    response_model=list[MemberOut],
)
async def list_members(
    org_id: OrgIdPath,
    _role: OrgMember,
    session: DbSession,
    principal: CurrentPrincipal,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[MemberOut]:
    rows = await service.list_members(session, principal, org_id, limit=limit, offset=offset)
    return [_member_out(membership, user) for membership, user in rows]


@router.post(
    "/orgs/{org_id}/members",
    tags=["members"],
    summary="Add an existing user directly (server administrator; org admins invite)",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberOut,
    responses=error_responses(409),
)
async def add_member(
    org_id: OrgIdPath,
    body: MemberAdd,
    _role: OrgAdmin,
    session: DbSession,
    principal: CurrentPrincipal,
) -> MemberOut:
    membership, user = await service.add_member(
        session, principal, org_id, role=body.role, user_id=body.user_id, email=body.email
    )
    await session.commit()
    return _member_out(membership, user)


@router.patch(
    "/orgs/{org_id}/members/{user_id}",
    tags=["members"],
    summary="Change a member's role (owner or admin; only owners grant or revoke owner)",
    response_model=MemberOut,
    responses=error_responses(409),
)
async def change_role(
    org_id: OrgIdPath,
    user_id: IdPath,
    body: MemberUpdate,
    _role: OrgAdmin,
    session: DbSession,
    principal: CurrentPrincipal,
) -> MemberOut:
    membership, user = await service.change_role(session, principal, org_id, user_id, body.role)
    await session.commit()
    return _member_out(membership, user)


@router.delete(
    "/orgs/{org_id}/members/{user_id}",
    tags=["members"],
    summary="Remove a member (owner or admin; only owners remove owners; anyone may leave)",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(403, 409),
)
async def remove_member(
    org_id: OrgIdPath,
    user_id: IdPath,
    _role: OrgMember,
    session: DbSession,
    principal: CurrentPrincipal,
) -> Response:
    await service.remove_member(session, principal, org_id, user_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- invitations --------------------------------------------------------------------------------


@router.post(
    "/orgs/{org_id}/invitations",
    tags=["members"],
    response_model=InvitationOut,
    status_code=201,
    responses=error_responses(409, 429),
)
async def create_invitation(
    org_id: OrgIdPath,
    body: InvitationIn,
    role: OrgAdmin,
    principal: CurrentPrincipal,
    session: DbSession,
    state: State,
) -> InvitationOut:
    """Mail an invitation; the accept token is only in the mail. Rate-limited per org
    (``WIREMESH_INVITATION_BURST``, ``WIREMESH_INVITATION_PER_HOUR``): every attempt counts."""
    if state.invitation_budget is not None:
        state.invitation_budget.charge(org_id)
    invitation, mail = await invitations.create_invitation(
        session,
        state.settings,
        org_id,
        email=body.email,
        role=body.role,
        caller_role=role,
        invited_by_user_id=principal.user_id or None,
        ttl=timedelta(days=body.expires_in_days),
    )
    await session.commit()
    return InvitationOut.of(invitation, mail.id)


@router.get("/orgs/{org_id}/invitations", tags=["members"], response_model=list[InvitationOut])
async def list_invitations(
    org_id: OrgIdPath, _role: OrgAdmin, session: DbSession
) -> list[InvitationOut]:
    return [InvitationOut.of(row) for row in await invitations.list_pending(session, org_id)]


@router.delete(
    "/orgs/{org_id}/invitations/{invitation_id}",
    tags=["members"],
    status_code=204,
    responses=error_responses(409),
)
async def revoke_invitation(
    org_id: OrgIdPath, invitation_id: IdPath, _role: OrgAdmin, session: DbSession
) -> Response:
    await invitations.revoke_invitation(session, org_id, invitation_id)
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/invitations/accept",
    tags=["members"],
    response_model=InvitationAcceptOut,
    responses=error_responses(403, 404, 409, 410),
)
async def accept_invitation(
    body: InvitationAcceptIn, principal: CurrentPrincipal, session: DbSession
) -> InvitationAcceptOut:
    membership = await invitations.accept_invitation(session, principal, body.token)
    await session.commit()
    return InvitationAcceptOut(
        org_id=membership.org_id, role=OrgRole(membership.role), membership_id=membership.id
    )
