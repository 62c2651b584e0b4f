"""FastAPI dependencies: one database session per request, and the caller behind the token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth import service as auth_service
from wiremesh.server.auth.principal import Principal
from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import ApiError
from wiremesh.server.http_errors import refuses
from wiremesh.server.state import AppState

_bearer = HTTPBearer(auto_error=False, scheme_name="ApiToken", description="An API token: `wm_...`")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.wiremesh
    return state


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: endpoints that write commit it; anything else rolls back."""
    async with get_state(request).sessionmaker() as session:
        yield session


@refuses(401)
async def get_principal(
    session: Annotated[AsyncSession, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(401, "unauthenticated", "an API token is required (Authorization: Bearer)")
    token, user = await auth_service.authenticate_token(session, credentials.credentials)
    principal = Principal(user_id=user.id, is_server_admin=user.is_server_admin, token_id=token.id)
    # Authentication is its own small unit of work: it records when the token was last used
    # (at most once a minute) and ends its transaction, so the endpoint starts a fresh one
    # and no lock taken here is held while the endpoint waits on anything else.
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= auth_service.LAST_USED_RESOLUTION:
        token.last_used_at = now
        await session.commit()
    else:
        await session.rollback()
    return principal


@refuses(403)
async def get_server_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_server_admin:
        raise ApiError(403, "forbidden", "this needs a server administrator")
    return principal


DbSession = Annotated[AsyncSession, Depends(get_session)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
ServerAdmin = Annotated[Principal, Depends(get_server_admin)]
State = Annotated[AppState, Depends(get_state)]


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@refuses(415)
async def require_json_body(request: Request) -> None:
    """415 ``unsupported_media_type`` when a request with a body does not send JSON.

    Without it a form or text body reaches validation and comes back as a confusing 422.
    Use as a router dependency: ``APIRouter(dependencies=[Depends(require_json_body)])``.
    """
    if request.method not in _BODY_METHODS:
        return
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if not has_body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(
            415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)"
        )
