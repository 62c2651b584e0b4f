"""The signed-in person's API tokens (for scripts): create one (shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from wiremesh.server.auth import service as auth_service
from wiremesh.server.auth.deps import DbSession
from wiremesh.server.users import service as users_service
from wiremesh.server.web.errors import as_page_refusal
from wiremesh.server.web.orgs.access import IdPath
from wiremesh.server.web.security import CurrentViewer
from wiremesh.server.web.templating import render_page

router = APIRouter()


async def _page(
    request: Request, session: DbSession, viewer: CurrentViewer, created: str | None
) -> Response:
    tokens = await auth_service.list_tokens(session, viewer.principal.user_id)
    context = {"tokens": tokens, "created": created}
    return render_page(request, "tokens/tokens.html", context)


@router.get("/account/tokens")
async def token_list(request: Request, session: DbSession, viewer: CurrentViewer) -> Response:
    return await _page(request, session, viewer, None)


@router.post("/account/tokens")
async def create(
    request: Request,
    session: DbSession,
    viewer: CurrentViewer,
    name: Annotated[str, Form(min_length=1, max_length=64)],
    expires_in_days: Annotated[int | None, Form(ge=1, le=3650)] = None,
) -> Response:
    """The new token is in this response only; reloading does not show it again."""
    user = await users_service.get_user(session, viewer.principal.user_id)
    _token, plaintext = await auth_service.issue_token(session, user, name, expires_in_days)
    await session.commit()
    return await _page(request, session, viewer, plaintext)


@router.post("/account/tokens/{token_id}/revoke")
async def revoke(session: DbSession, viewer: CurrentViewer, token_id: IdPath) -> Response:
    with as_page_refusal():
        await auth_service.revoke_token(session, viewer.principal, token_id)
    await session.commit()
    return RedirectResponse("/account/tokens", status_code=303)
