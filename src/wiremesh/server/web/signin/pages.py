"""Signing in and out: password, e-mailed sign-in link, and choosing a password by link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from wiremesh.server.auth import links, passwords, websessions
from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.auth.links import LinkPurpose
from wiremesh.server.errors import ApiError
from wiremesh.server.orgs.invitations import public_base_url
from wiremesh.server.users import repository as users_repository
from wiremesh.server.users.models import User
from wiremesh.server.users.service import normalize_email
from wiremesh.server.web.errors import PageRefusal
from wiremesh.server.web.security import OptionalViewer
from wiremesh.server.web.signin.throttle import count_failure, may_mail_link, wait_before_trying
from wiremesh.server.web.templating import SESSION_COOKIE, render_page, set_cookie

router = APIRouter()

Email = Annotated[str, Form(max_length=320)]
Secret = Annotated[str, Form(max_length=passwords.MAX_LENGTH)]
Next = Annotated[str, Form(max_length=2000)]


def safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (``//evil``, ``https://...``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def signed_in(
    request: Request, session: DbSession, user: User, target: str
) -> RedirectResponse:
    """Start a session for ``user``, commit, and send the browser on with its cookie."""
    _row, secret = await websessions.start_session(session, user)
    await session.commit()
    response = RedirectResponse(safe_next(target), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, secret)
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request, viewer: OptionalViewer, next: str = "/") -> Response:
    if viewer is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render_page(request, "signin/sign_in.html", {"next": safe_next(next), "error": None})


@router.post("/sign-in")
async def sign_in(
    request: Request,
    session: DbSession,
    state: State,
    email: Email,
    password: Secret,
    next: Next = "/",
) -> Response:
    address = normalize_email(email)
    wait = wait_before_trying(request, state, address)
    if wait is not None:
        response = render_page(
            request,
            "signin/sign_in.html",
            {"next": safe_next(next), "error": f"Too many failed attempts. Retry in {wait} s."},
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = await users_repository.get_by_email(session, address)
    known = user is not None and user.is_active
    stored = user.password_hash if known and user else None
    if not await passwords.matches_off_loop(password, stored):
        count_failure(request, state, address)
        return render_page(
            request,
            "signin/sign_in.html",
            {"next": safe_next(next), "error": "Wrong e-mail address or password."},
            status=401,
        )
    assert user is not None
    return await signed_in(request, session, user, next)


@router.post("/sign-out")
async def sign_out(request: Request, session: DbSession, viewer: OptionalViewer) -> Response:
    if viewer is not None:
        await websessions.end_session(session, viewer.session_id)
        await session.commit()
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- links by e-mail -----------------------------------------------------------------------


def _purpose(kind: str) -> LinkPurpose:
    return LinkPurpose.SIGN_IN if kind == "sign-in" else LinkPurpose.PASSWORD


@router.get("/sign-in/email")
async def email_link_page(request: Request) -> Response:
    return render_page(request, "signin/ask_link.html", {"kind": "sign-in", "sent": False})


@router.get("/password/forgot")
async def forgot_page(request: Request) -> Response:
    return render_page(request, "signin/ask_link.html", {"kind": "password", "sent": False})


async def _ask_link(
    request: Request, session: DbSession, state: State, email: str, kind: str
) -> Response:
    """The same answer whether or not the address has an account, so it tells nobody."""
    address = normalize_email(email)
    user = await users_repository.get_by_email(session, address)
    if user is not None and user.is_active and may_mail_link(request, address):
        await links.mail_link(session, user, _purpose(kind), public_base_url(state.settings))
        await session.commit()
    return render_page(request, "signin/ask_link.html", {"kind": kind, "sent": True})


@router.post("/sign-in/email")
async def ask_sign_in_link(
    request: Request, session: DbSession, state: State, email: Email
) -> Response:
    return await _ask_link(request, session, state, email, "sign-in")


@router.post("/password/forgot")
async def ask_password_link(
    request: Request, session: DbSession, state: State, email: Email
) -> Response:
    return await _ask_link(request, session, state, email, "password")


def _link_refused() -> PageRefusal:
    return PageRefusal(404, "This link is not valid: it was used, has expired, or was replaced.")


@router.get("/sign-in/link")
async def sign_in_link_page(request: Request, session: DbSession, token: str = "") -> Response:
    """A page with a button, not the sign-in itself: a mail scanner that fetches the link
    must not spend it."""
    if await links.find_link(session, token, LinkPurpose.SIGN_IN) is None:
        raise _link_refused()
    return render_page(request, "signin/use_link.html", {"token": token})


@router.post("/sign-in/link")
async def use_sign_in_link(
    request: Request, session: DbSession, token: Annotated[str, Form(max_length=300)]
) -> Response:
    user = await links.use_link(session, token, LinkPurpose.SIGN_IN)
    if user is None:
        raise _link_refused()
    return await signed_in(request, session, user, "/")


@router.get("/password/choose")
async def choose_password_page(request: Request, session: DbSession, token: str = "") -> Response:
    found = await links.find_link(session, token, LinkPurpose.PASSWORD)
    if found is None:
        raise _link_refused()
    context = {"token": token, "email": found[1].email, "error": None}
    return render_page(request, "signin/choose_password.html", context)


@router.post("/password/choose")
async def choose_password(
    request: Request,
    session: DbSession,
    token: Annotated[str, Form(max_length=300)],
    password: Secret,
) -> Response:
    found = await links.find_link(session, token, LinkPurpose.PASSWORD)
    if found is None:
        raise _link_refused()
    try:
        hashed = await passwords.hash_off_loop(password)
    except ApiError as exc:
        context = {"token": token, "email": found[1].email, "error": exc.message}
        return render_page(request, "signin/choose_password.html", context, status=422)
    user = await links.use_link(session, token, LinkPurpose.PASSWORD)
    if user is None:
        raise _link_refused()
    user.password_hash = hashed
    await websessions.end_all_sessions(session, user.id)
    return await signed_in(request, session, user, "/")
