"""Mail: an org's SMTP settings (or the global ones), the test-mail button, the outbox.

The same ``mail.service`` calls as the REST API, with the scope the page's authorization
built: an org admin's ``OrgScope``, or the server's for the global settings.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.errors import ApiError, NotFound
from wiremesh.server.mail import outbox, service
from wiremesh.server.mail.schemas import MailOut, MailTestOut, SMTPSettingsOut
from wiremesh.server.mail.service import SMTPSettingsInput, TlsModeChoice
from wiremesh.server.mail.testmail import charge_test_mail, send_test_mail
from wiremesh.server.mail.transport import SmtpTransport
from wiremesh.server.tenancy import SERVER_SCOPE, TenantScope
from wiremesh.server.web.errors import as_page_refusal
from wiremesh.server.web.orgs.access import AdminPage, IdPath
from wiremesh.server.web.security import ServerAdminViewer
from wiremesh.server.web.templating import render_page

router = APIRouter()
TEST_MAIL_TIMEOUT = 15.0
_transport = SmtpTransport(timeout=TEST_MAIL_TIMEOUT)

Text = Annotated[str, Form(max_length=320)]
Optional = Annotated[str, Form(max_length=1024)]


async def _mail_page(
    request: Request,
    session: DbSession,
    scope: TenantScope,
    base: str,
    context: dict[str, Any],
    *,
    notice: str | None = None,
    error: str | None = None,
    test: MailTestOut | None = None,
    status: int = 200,
) -> Response:
    try:
        current: SMTPSettingsOut | None = SMTPSettingsOut.of(
            await service.get_settings(session, scope)
        )
    except NotFound:
        current = None
    mails = [MailOut.of(row) for row in await outbox.list_mail(session, scope, limit=50)]
    page = {
        **context,
        "base": base,
        "smtp": current,
        "mails": mails,
        "notice": notice,
        "error": error,
        "test": test,
        "retryable": outbox.RETRYABLE,
    }
    return render_page(request, "mail/mail.html", page, status=status)


async def _save(
    request: Request,
    session: DbSession,
    state: State,
    scope: TenantScope,
    base: str,
    context: dict[str, Any],
    form: SMTPSettingsInput,
) -> Response:
    try:
        async with session.begin_nested():  # a refusal undoes only this, the page stays loaded
            await service.put_settings(session, state.settings, scope, form)
    except ApiError as exc:
        return await _mail_page(
            request, session, scope, base, context, error=exc.message, status=exc.status
        )
    await session.commit()
    return RedirectResponse(base, status_code=303)


async def _test(
    request: Request,
    session: DbSession,
    state: State,
    scope: TenantScope,
    base: str,
    context: dict[str, Any],
    to: str,
) -> Response:
    try:
        charge_test_mail(state, scope)
        result = await send_test_mail(session, state.settings, _transport, scope, to)
    except ApiError as exc:  # refused before anything was stored
        return await _mail_page(
            request, session, scope, base, context, error=exc.message, status=exc.status
        )
    return await _mail_page(request, session, scope, base, context, test=result)


def settings_input(
    smtp_server: Annotated[str, Form(max_length=253)],
    smtp_port: Annotated[int, Form(ge=1, le=65535)],
    from_email: Text,
    from_name: Annotated[str, Form(max_length=128)] = "",
    smtp_username: Optional = "",
    smtp_password: Optional = "",
    tls_mode: Annotated[TlsModeChoice, Form()] = "auto",
    use_tls: Annotated[bool, Form()] = False,
    verify_certificate: Annotated[bool, Form()] = False,
    is_active: Annotated[bool, Form()] = False,
) -> SMTPSettingsInput:
    """The SMTP form as the service takes it (one dependency for the org's and the global
    form); an empty password field keeps the stored one, an empty From name clears it."""
    return SMTPSettingsInput(
        smtp_server=smtp_server,
        smtp_port=smtp_port,
        from_email=from_email,
        from_name=from_name or None,
        smtp_username=smtp_username or None,
        smtp_password=smtp_password or None,
        use_tls=use_tls,
        tls_mode=tls_mode,
        verify_certificate=verify_certificate,
        is_active=is_active,
    )


SettingsForm = Annotated[SMTPSettingsInput, Depends(settings_input)]


# --- an org's mail (org admins) -------------------------------------------------------------


def _org_base(page: AdminPage) -> str:
    return f"/orgs/{page.org.id}/mail"


@router.get("/orgs/{org_id}/mail")
async def org_mail(request: Request, page: AdminPage, session: DbSession) -> Response:
    return await _mail_page(request, session, page.scope, _org_base(page), page.context("mail"))


@router.post("/orgs/{org_id}/mail/smtp")
async def org_save(
    request: Request, page: AdminPage, session: DbSession, state: State, form: SettingsForm
) -> Response:
    return await _save(
        request, session, state, page.scope, _org_base(page), page.context("mail"), form
    )


@router.post("/orgs/{org_id}/mail/test")
async def org_test(
    request: Request, page: AdminPage, session: DbSession, state: State, to: Text
) -> Response:
    return await _test(
        request, session, state, page.scope, _org_base(page), page.context("mail"), to
    )


@router.post("/orgs/{org_id}/mail/{mail_id}/retry")
async def org_retry(page: AdminPage, session: DbSession, mail_id: IdPath) -> Response:
    return await _retry(session, page.scope, mail_id, _org_base(page))


async def _retry(session: DbSession, scope: TenantScope, mail_id: int, base: str) -> Response:
    """Send a failed or waiting mail again now (``outbox.retry_mail``: the scope's mails only)."""
    with as_page_refusal():
        await outbox.retry_mail(session, scope, mail_id)
    await session.commit()
    return RedirectResponse(base, status_code=303)


# --- the global mail (server administrators) ------------------------------------------------

GLOBAL_BASE = "/admin/mail"


@router.get(GLOBAL_BASE)
async def global_mail(request: Request, viewer: ServerAdminViewer, session: DbSession) -> Response:
    return await _mail_page(request, session, SERVER_SCOPE, GLOBAL_BASE, {"section": "mail"})


@router.post(f"{GLOBAL_BASE}/smtp")
async def global_save(
    request: Request,
    viewer: ServerAdminViewer,
    session: DbSession,
    state: State,
    form: SettingsForm,
) -> Response:
    return await _save(request, session, state, SERVER_SCOPE, GLOBAL_BASE, {}, form)


@router.post(f"{GLOBAL_BASE}/test")
async def global_test(
    request: Request, viewer: ServerAdminViewer, session: DbSession, state: State, to: Text
) -> Response:
    return await _test(request, session, state, SERVER_SCOPE, GLOBAL_BASE, {}, to)


@router.post(f"{GLOBAL_BASE}/{{mail_id}}/retry")
async def global_retry(viewer: ServerAdminViewer, session: DbSession, mail_id: IdPath) -> Response:
    return await _retry(session, SERVER_SCOPE, mail_id, GLOBAL_BASE)
