"""Invitations: an admin sends and revokes them; the mailed link lands on the accept page.

The accept page serves three people: the invited user signed in (accept), the invited
user signed out (sign in first, then back here), and an address with no account yet (choose
a name and password: the account is created and the invitation accepted in one step). The
token is checked by hash, works once, and expires (``orgs.invitations``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from wiremesh.server.auth import passwords
from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.auth.principal import Principal
from wiremesh.server.errors import ApiError
from wiremesh.server.orgs import invitations
from wiremesh.server.orgs import repository as orgs_repository
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.users import repository as users_repository
from wiremesh.server.users import service as users_service
from wiremesh.server.web.errors import PageRefusal, as_page_refusal
from wiremesh.server.web.orgs.access import AdminPage, IdPath
from wiremesh.server.web.security import CurrentViewer, OptionalViewer
from wiremesh.server.web.signin.pages import signed_in
from wiremesh.server.web.templating import render_page

router = APIRouter()
Token = Annotated[str, Form(max_length=300)]


async def _list_page(
    request: Request, page: AdminPage, session: DbSession, *, error: str | None, status: int = 200
) -> Response:
    pending = await invitations.list_pending(session, page.org.id)
    context = {
        **page.context("invitations"),
        "pending": pending,
        "roles": [r for r in OrgRole if r is not OrgRole.OWNER or page.role is OrgRole.OWNER],
        "error": error,
    }
    return render_page(request, "invitations/list.html", context, status=status)


@router.get("/orgs/{org_id}/invitations")
async def invitation_list(request: Request, page: AdminPage, session: DbSession) -> Response:
    return await _list_page(request, page, session, error=None)


@router.post("/orgs/{org_id}/invitations")
async def send(
    request: Request,
    page: AdminPage,
    session: DbSession,
    state: State,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[OrgRole, Form()] = OrgRole.MEMBER,
) -> Response:
    try:
        async with session.begin_nested():  # a refusal undoes only this, the page stays loaded
            await invitations.create_invitation(
                session,
                state.settings,
                page.org.id,
                email=email,
                role=role,
                caller_role=page.role,
                invited_by_user_id=page.viewer.principal.user_id or None,
            )
    except ApiError as exc:
        return await _list_page(request, page, session, error=exc.message, status=exc.status)
    await session.commit()
    return RedirectResponse(f"/orgs/{page.org.id}/invitations", status_code=303)


@router.post("/orgs/{org_id}/invitations/{invitation_id}/revoke")
async def revoke(page: AdminPage, session: DbSession, invitation_id: IdPath) -> Response:
    with as_page_refusal():
        await invitations.revoke_invitation(session, page.org.id, invitation_id)
    await session.commit()
    return RedirectResponse(f"/orgs/{page.org.id}/invitations", status_code=303)


def _not_usable() -> PageRefusal:
    return PageRefusal(
        404, "This invitation is not valid: it was used, revoked, has expired, or was replaced."
    )


@router.get("/invitations/accept")
async def accept_page(
    request: Request, session: DbSession, viewer: OptionalViewer, token: str = ""
) -> Response:
    invitation = await invitations.find_pending(session, token)
    if invitation is None:
        raise _not_usable()
    org = await orgs_repository.get(session, invitation.org_id)
    has_account = await users_repository.get_by_email(session, invitation.email) is not None
    context = {
        "invitation": invitation,
        "org_name": org.name if org else "",
        "token": token,
        "has_account": has_account,
        "sign_in_url": "/sign-in?next=" + quote(f"/invitations/accept?token={token}", safe=""),
        "error": None,
    }
    return render_page(request, "invitations/accept.html", context)


@router.post("/invitations/accept")
async def accept(session: DbSession, viewer: CurrentViewer, token: Token) -> Response:
    with as_page_refusal():
        membership = await invitations.accept_invitation(session, viewer.principal, token)
    await session.commit()
    return RedirectResponse(f"/orgs/{membership.org_id}/devices", status_code=303)


@router.post("/invitations/accept/new-account")
async def accept_with_new_account(
    request: Request,
    session: DbSession,
    token: Token,
    name: Annotated[str, Form(min_length=1, max_length=128)],
    password: Annotated[str, Form(max_length=passwords.MAX_LENGTH)],
) -> Response:
    """Create the invited address's account with a password, accept, and sign in."""
    invitation = await invitations.find_pending(session, token)
    if invitation is None:
        raise _not_usable()
    try:
        hashed = await passwords.hash_off_loop(password)
        async with session.begin_nested():
            user = await users_service.create_user(session, email=invitation.email, name=name)
    except ApiError as exc:
        org = await orgs_repository.get(session, invitation.org_id)
        context = {
            "invitation": invitation,
            "org_name": org.name if org else "",
            "token": token,
            "has_account": exc.code == "email_taken",
            "sign_in_url": "/sign-in?next=" + quote(f"/invitations/accept?token={token}", safe=""),
            "error": exc.message,
        }
        return render_page(request, "invitations/accept.html", context, status=exc.status)
    user.password_hash = hashed
    principal = Principal(user_id=user.id, is_server_admin=False, token_id=0)
    with as_page_refusal():
        membership = await invitations.accept_invitation(session, principal, token)
    return await signed_in(request, session, user, f"/orgs/{membership.org_id}/devices")
