"""HTTP endpoints of the users domain (server administrators, except ``/users/me``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from wiremesh.server.auth.deps import CurrentPrincipal, DbSession, ServerAdmin, require_json_body
from wiremesh.server.http_errors import error_responses
from wiremesh.server.orgs.deps import IdPath
from wiremesh.server.users import service
from wiremesh.server.users.models import User
from wiremesh.server.users.schemas import UserCreate, UserOut

router = APIRouter(tags=["users"], dependencies=[Depends(require_json_body)])


def _user_out(user: User) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@router.post(
    "/users",
    summary="Create a user (server administrator)",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(409),
)
async def create_user(body: UserCreate, session: DbSession, _admin: ServerAdmin) -> UserOut:
    user = await service.create_user(
        session, email=body.email, name=body.name, is_server_admin=body.is_server_admin
    )
    await session.commit()
    return _user_out(user)


@router.get("/users", summary="List users (server administrator)", response_model=list[UserOut])
async def list_users(
    session: DbSession,
    _admin: ServerAdmin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2_147_483_647)] = 0,
) -> list[UserOut]:
    return [
        _user_out(user) for user in await service.list_users(session, limit=limit, offset=offset)
    ]


@router.get("/users/me", summary="The calling user", response_model=UserOut)
async def get_me(session: DbSession, principal: CurrentPrincipal) -> UserOut:
    return _user_out(await service.get_user(session, principal.user_id))


@router.get(
    "/users/{user_id}", summary="Show a user (server administrator)", response_model=UserOut
)
async def get_user(user_id: IdPath, session: DbSession, _admin: ServerAdmin) -> UserOut:
    return _user_out(await service.get_user(session, user_id))


@router.delete(
    "/users/{user_id}",
    summary="Delete a user with their memberships, tokens, devices and history "
    "(server administrator)",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(409),
)
async def delete_user(user_id: IdPath, session: DbSession, principal: ServerAdmin) -> Response:
    await service.delete_user(session, principal, user_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
