"""FastAPI dependencies: one database session per request, and the caller behind the token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth import service as auth_service
from wiremesh.server.errors import ApiError
from wiremesh.server.state import AppState

_bearer = HTTPBearer(auto_error=False, description="An API token: `wm_...`")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.wiremesh
    return state


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: endpoints that write commit it; anything else rolls back."""
    async with get_state(request).sessionmaker() as session:
        yield session


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user, through one API token."""

    user_id: int
    is_server_admin: bool
    token_id: int


async def get_principal(
    session: Annotated[AsyncSession, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(401, "unauthenticated", "an API token is required (Authorization: Bearer)")
    token, user = await auth_service.authenticate_token(session, credentials.credentials)
    return Principal(user_id=user.id, is_server_admin=user.is_server_admin, token_id=token.id)


async def get_server_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_server_admin:
        raise ApiError(403, "forbidden", "this needs a server administrator")
    return principal


DbSession = Annotated[AsyncSession, Depends(get_session)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
ServerAdmin = Annotated[Principal, Depends(get_server_admin)]
State = Annotated[AppState, Depends(get_state)]
