"""HTTP endpoints of the mail domain: SMTP settings, test mail, the outbox, alerts, invitations.

Server administrators manage the global SMTP configuration and see every mail; org admins
manage their org's configuration, alerts and invitations, and see their org's mails.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from wiremesh.server.auth.deps import (
    CurrentPrincipal,
    DbSession,
    ServerAdmin,
    State,
    require_json_body,
)
from wiremesh.server.mail import alerts, invitations, outbox, service
from wiremesh.server.mail.schemas import (
    AlertSettingsIn,
    AlertSettingsOut,
    InvitationAcceptIn,
    InvitationAcceptOut,
    InvitationIn,
    InvitationOut,
    MailOut,
    MailStatusName,
    MailTestIn,
    MailTestOut,
    SMTPSettingsIn,
    SMTPSettingsOut,
)
from wiremesh.server.mail.testmail import send_test_mail
from wiremesh.server.mail.transport import MailTransport, SmtpTransport
from wiremesh.server.orgs.deps import IdPath, OrgAdmin, OrgIdPath
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.users.schemas import MAX_DB_ID

router = APIRouter(tags=["mail"], dependencies=[Depends(require_json_body)])

# A person waits for a test mail's answer: give up sooner than the worker does.
TEST_MAIL_TIMEOUT = 15.0
_transport = SmtpTransport(timeout=TEST_MAIL_TIMEOUT)


def get_mail_transport() -> MailTransport:
    """The transport test mails go through; tests override it with ``FakeTransport``."""
    return _transport


Transport = Annotated[MailTransport, Depends(get_mail_transport)]
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many, newest first")]
Offset = Annotated[int, Query(ge=0, le=MAX_DB_ID)]
StatusFilter = Annotated[MailStatusName | None, Query(description="Only mails in this state")]


# --- global SMTP settings (server administrators) ----------------------------------------------


@router.get("/smtp/global", response_model=SMTPSettingsOut)
async def get_global_smtp(_admin: ServerAdmin, session: DbSession) -> SMTPSettingsOut:
    return SMTPSettingsOut.of(await service.get_settings(session, None))


@router.put("/smtp/global", response_model=SMTPSettingsOut)
async def put_global_smtp(
    body: SMTPSettingsIn, _admin: ServerAdmin, session: DbSession, state: State
) -> SMTPSettingsOut:
    row, _created = await service.put_settings(session, state.settings, None, body.to_input())
    await session.commit()
    return SMTPSettingsOut.of(row)


@router.delete("/smtp/global", status_code=204)
async def delete_global_smtp(_admin: ServerAdmin, session: DbSession) -> Response:
    await service.delete_settings(session, None)
    await session.commit()
    return Response(status_code=204)


@router.post("/smtp/global/test", response_model=MailTestOut)
async def send_global_test_mail(
    body: MailTestIn, _admin: ServerAdmin, session: DbSession, state: State, transport: Transport
) -> MailTestOut:
    return await send_test_mail(session, state.settings, transport, None, body.to)


# --- an org's SMTP settings (org admins) --------------------------------------------------------


@router.get("/orgs/{org_id}/smtp", response_model=SMTPSettingsOut)
async def get_org_smtp(org_id: OrgIdPath, _role: OrgAdmin, session: DbSession) -> SMTPSettingsOut:
    return SMTPSettingsOut.of(await service.get_settings(session, org_id))


@router.put("/orgs/{org_id}/smtp", response_model=SMTPSettingsOut)
async def put_org_smtp(
    org_id: OrgIdPath, body: SMTPSettingsIn, _role: OrgAdmin, session: DbSession, state: State
) -> SMTPSettingsOut:
    row, _created = await service.put_settings(session, state.settings, org_id, body.to_input())
    await session.commit()
    return SMTPSettingsOut.of(row)


@router.delete("/orgs/{org_id}/smtp", status_code=204)
async def delete_org_smtp(org_id: OrgIdPath, _role: OrgAdmin, session: DbSession) -> Response:
    await service.delete_settings(session, org_id)
    await session.commit()
    return Response(status_code=204)


@router.post("/orgs/{org_id}/smtp/test", response_model=MailTestOut)
async def send_org_test_mail(
    org_id: OrgIdPath,
    body: MailTestIn,
    _role: OrgAdmin,
    session: DbSession,
    state: State,
    transport: Transport,
) -> MailTestOut:
    """Send through exactly the configuration the org's mail uses (its own, else global)."""
    return await send_test_mail(session, state.settings, transport, org_id, body.to)


# --- the outbox ---------------------------------------------------------------------------------


@router.get("/orgs/{org_id}/mail", response_model=list[MailOut])
async def list_org_mail(
    org_id: OrgIdPath,
    _role: OrgAdmin,
    session: DbSession,
    status: StatusFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[MailOut]:
    rows = await outbox.list_mail(session, org_id=org_id, status=status, limit=limit, offset=offset)
    return [MailOut.of(row) for row in rows]


@router.get("/mail", response_model=list[MailOut])
async def list_all_mail(
    _admin: ServerAdmin,
    session: DbSession,
    status: StatusFilter = None,
    org_id: Annotated[
        int | None, Query(ge=1, le=MAX_DB_ID, description="Only this org's mails")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[MailOut]:
    rows = await outbox.list_mail(
        session,
        org_id=org_id,
        all_orgs=org_id is None,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [MailOut.of(row) for row in rows]


# --- offline alerts -----------------------------------------------------------------------------


@router.get("/orgs/{org_id}/alerts", response_model=AlertSettingsOut)
async def get_org_alerts(
    org_id: OrgIdPath, _role: OrgAdmin, session: DbSession
) -> AlertSettingsOut:
    return AlertSettingsOut.of(await alerts.get_alert_settings(session, org_id))


@router.put("/orgs/{org_id}/alerts", response_model=AlertSettingsOut)
async def put_org_alerts(
    org_id: OrgIdPath, body: AlertSettingsIn, _role: OrgAdmin, session: DbSession
) -> AlertSettingsOut:
    view = await alerts.put_alert_settings(
        session,
        org_id,
        enabled=body.enabled,
        offline_threshold_seconds=body.offline_threshold_seconds,
        debounce_seconds=body.debounce_seconds,
    )
    await session.commit()
    return AlertSettingsOut.of(view)


# --- invitations --------------------------------------------------------------------------------


@router.post("/orgs/{org_id}/invitations", response_model=InvitationOut, status_code=201)
async def create_invitation(
    org_id: OrgIdPath,
    body: InvitationIn,
    role: OrgAdmin,
    principal: CurrentPrincipal,
    session: DbSession,
    state: State,
) -> InvitationOut:
    """Mail an invitation; the accept token is only in the mail."""
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


@router.get("/orgs/{org_id}/invitations", response_model=list[InvitationOut])
async def list_invitations(
    org_id: OrgIdPath, _role: OrgAdmin, session: DbSession
) -> list[InvitationOut]:
    return [InvitationOut.of(row) for row in await invitations.list_pending(session, org_id)]


@router.delete("/orgs/{org_id}/invitations/{invitation_id}", status_code=204)
async def revoke_invitation(
    org_id: OrgIdPath, invitation_id: IdPath, _role: OrgAdmin, session: DbSession
) -> Response:
    await invitations.revoke_invitation(session, org_id, invitation_id)
    await session.commit()
    return Response(status_code=204)


@router.post("/invitations/accept", response_model=InvitationAcceptOut)
async def accept_invitation(
    body: InvitationAcceptIn, principal: CurrentPrincipal, session: DbSession
) -> InvitationAcceptOut:
    membership = await invitations.accept_invitation(session, principal, body.token)
    await session.commit()
    return InvitationAcceptOut(
        org_id=membership.org_id, role=OrgRole(membership.role), membership_id=membership.id
    )
