"""HTTP endpoints of the mail domain: SMTP settings, test mail, the outbox.

Org admins manage their org's configuration under ``/orgs/{org_id}/smtp`` and see their org's
mails; server administrators manage the global configuration under ``/smtp/global`` and see
every mail. Each set of endpoints is written once and mounted for both scopes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from wiremesh.server.auth.deps import DbSession, State, require_json_body
from wiremesh.server.http_errors import error_responses
from wiremesh.server.mail import outbox, pausing, service
from wiremesh.server.mail.schemas import (
    MailOut,
    MailRetryIn,
    MailRetryOut,
    MailStatusName,
    MailTestIn,
    MailTestOut,
    SMTPSettingsIn,
    SMTPSettingsOut,
)
from wiremesh.server.mail.testmail import charge_test_mail, send_test_mail
from wiremesh.server.mail.transport import MailTransport, SmtpTransport
from wiremesh.server.orgs.deps import (
    ORG_PREFIX,
    ScopeDependency,
    include_for_both_scopes,
    org_admin_scope,
    server_scope,
    server_scope_or_one_org,
)
from wiremesh.server.tenancy import TenantScope
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
MailId = Annotated[int, Path(ge=1, le=MAX_DB_ID)]
StatusFilter = Annotated[MailStatusName | None, Query(description="Only mails in this state")]


# --- SMTP settings: an org's (org admins), or the global ones (server administrators) ----------


def _smtp_routes(scope_of: ScopeDependency) -> APIRouter:
    """The scope's own SMTP configuration and its test mail, for one scope dependency."""
    routes = APIRouter()

    @routes.get("", response_model=SMTPSettingsOut, responses=error_responses(404))
    async def get_smtp(
        session: DbSession, scope: TenantScope = Depends(scope_of)
    ) -> SMTPSettingsOut:
        return SMTPSettingsOut.of(await service.get_settings(session, scope))

    @routes.put("", response_model=SMTPSettingsOut, responses=error_responses(409))
    async def put_smtp(
        body: SMTPSettingsIn,
        session: DbSession,
        state: State,
        scope: TenantScope = Depends(scope_of),
    ) -> SMTPSettingsOut:
        row, _created = await service.put_settings(session, state.settings, scope, body.to_input())
        await session.commit()
        return SMTPSettingsOut.of(row)

    @routes.delete("", status_code=204, responses=error_responses(404))
    async def delete_smtp(session: DbSession, scope: TenantScope = Depends(scope_of)) -> Response:
        await service.delete_settings(session, scope)
        await session.commit()
        return Response(status_code=204)

    @routes.post("/test", response_model=MailTestOut, responses=error_responses(409))
    async def send_smtp_test_mail(
        body: MailTestIn,
        session: DbSession,
        state: State,
        transport: Transport,
        scope: TenantScope = Depends(scope_of),
    ) -> MailTestOut:
        """Send through exactly the configuration the scope's mail uses (an org's own, else
        the global one). Rate-limited per org: a test is a diagnosis, not a probe."""
        charge_test_mail(state, scope)
        return await send_test_mail(session, state.settings, transport, scope, body.to)

    @routes.post("/resume", response_model=SMTPSettingsOut, responses=error_responses(404, 409))
    async def resume_smtp(
        session: DbSession, scope: TenantScope = Depends(scope_of)
    ) -> SMTPSettingsOut:
        """End a pause (after the relay refused the login) without changing the settings,
        when the relay's side was fixed; saving the settings ends it too."""
        row = await pausing.resume(session, scope)
        await session.commit()
        return SMTPSettingsOut.of(row)

    return routes


include_for_both_scopes(
    router,
    _smtp_routes,
    org=org_admin_scope,
    server=server_scope,
    org_prefix=f"{ORG_PREFIX}/smtp",
    server_prefix="/smtp/global",
)


# --- the outbox: an org's mails (org admins), or every mail (server administrators) ------------


def _outbox_routes(scope_of: ScopeDependency) -> APIRouter:
    """The scope's mails, newest first, for one scope dependency."""
    routes = APIRouter()

    @routes.get("/mail", response_model=list[MailOut])
    async def list_mail(
        session: DbSession,
        scope: TenantScope = Depends(scope_of),
        status: StatusFilter = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> list[MailOut]:
        rows = await outbox.list_mail(session, scope, status=status, limit=limit, offset=offset)
        return [MailOut.of(row) for row in rows]

    @routes.post("/mail/retry", response_model=MailRetryOut, responses=error_responses(422))
    async def retry_mails(
        body: MailRetryIn, session: DbSession, scope: TenantScope = Depends(scope_of)
    ) -> MailRetryOut:
        """Send every failed (or queued) mail of the scope again now."""
        retried = await outbox.retry_all(session, scope, body.status)
        await session.commit()
        return MailRetryOut(retried=retried)

    @routes.post(
        "/mail/{mail_id}/retry", response_model=MailOut, responses=error_responses(404, 409)
    )
    async def retry_mail(
        mail_id: MailId, session: DbSession, scope: TenantScope = Depends(scope_of)
    ) -> MailOut:
        """Send a failed mail again from its first attempt, or a queued one without waiting
        out its backoff."""
        row = await outbox.retry_mail(session, scope, mail_id)
        await session.commit()
        return MailOut.of(row)

    return routes


include_for_both_scopes(router, _outbox_routes, org=org_admin_scope, server=server_scope_or_one_org)
