"""HTTP endpoints of the mail domain: SMTP settings, test mail, the outbox.

Server administrators manage the global SMTP configuration and see every mail; org admins
manage their org's configuration and see their org's mails.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from wiremesh.server.auth.deps import (
    DbSession,
    ServerAdmin,
    State,
    require_json_body,
)
from wiremesh.server.mail import outbox, service
from wiremesh.server.mail.schemas import (
    MailOut,
    MailStatusName,
    MailTestIn,
    MailTestOut,
    SMTPSettingsIn,
    SMTPSettingsOut,
)
from wiremesh.server.mail.testmail import send_test_mail
from wiremesh.server.mail.transport import MailTransport, SmtpTransport
from wiremesh.server.orgs.deps import OrgAdmin, OrgIdPath
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
