"""The signed-in person's password: changed with the current one, every other session ended.

The current password is asked again (a session left open on someone else's screen must not
be enough to take the account) and wrong answers count against the same budget as failed
sign-ins. A change signs the account out everywhere and starts a fresh session here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from wiremesh.server.auth import passwords, websessions
from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.errors import ApiError
from wiremesh.server.users import service as users_service
from wiremesh.server.web.security import CurrentViewer
from wiremesh.server.web.signin.pages import signed_in
from wiremesh.server.web.signin.throttle import count_failure, wait_before_trying
from wiremesh.server.web.templating import render_page

router = APIRouter()
PAGE = "/account/password"
TEMPLATE = "account/password.html"
Secret = Annotated[str, Form(max_length=passwords.MAX_LENGTH)]


@router.get(PAGE)
async def password_page(
    request: Request, session: DbSession, viewer: CurrentViewer, changed: bool = False
) -> Response:
    user = await users_service.get_user(session, viewer.principal.user_id)
    context = {"changed": changed, "error": None, "has_password": user.password_hash is not None}
    return render_page(request, TEMPLATE, context)


@router.post(PAGE)
async def change_password(
    request: Request,
    session: DbSession,
    state: State,
    viewer: CurrentViewer,
    current_password: Secret,
    new_password: Secret,
) -> Response:
    wait = wait_before_trying(request, state, viewer.email)
    if wait is not None:
        error = f"Too many wrong passwords. Retry in {wait} s."
        response = render_page(request, TEMPLATE, _failed(error), status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    user = await users_service.get_user(session, viewer.principal.user_id)
    if not await passwords.matches_off_loop(current_password, user.password_hash):
        count_failure(request, state, viewer.email)
        error = "The current password is not right."
        return render_page(request, TEMPLATE, _failed(error), status=401)
    try:
        user.password_hash = await passwords.hash_off_loop(new_password)
    except ApiError as exc:
        return render_page(request, TEMPLATE, _failed(exc.message), status=exc.status)
    await websessions.end_all_sessions(session, user.id)
    return await signed_in(request, session, user, f"{PAGE}?changed=1")


def _failed(error: str) -> dict[str, object]:
    return {"changed": False, "error": error, "has_password": True}
