"""HTTP endpoints of the auth domain: the caller's API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from wiremesh.server.auth import service
from wiremesh.server.auth.deps import CurrentPrincipal, DbSession, require_json_body
from wiremesh.server.auth.models import ApiToken
from wiremesh.server.auth.schemas import TokenCreate, TokenCreated, TokenOut
from wiremesh.server.orgs.deps import IdPath
from wiremesh.server.users import service as users_service

router = APIRouter(tags=["tokens"], dependencies=[Depends(require_json_body)])


def _token_out(token: ApiToken) -> TokenOut:
    return TokenOut.model_validate(token, from_attributes=True)


@router.post(
    "/tokens",
    summary="Create an API token for yourself; the secret is shown once",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
)
async def create_token(
    body: TokenCreate, session: DbSession, principal: CurrentPrincipal
) -> TokenCreated:
    user = await users_service.get_user(session, principal.user_id)
    token, plaintext = await service.issue_token(session, user, body.name, body.expires_in_days)
    await session.commit()
    return TokenCreated(**_token_out(token).model_dump(), token=plaintext)


@router.get(
    "/tokens", summary="List your API tokens (never their secrets)", response_model=list[TokenOut]
)
async def list_tokens(session: DbSession, principal: CurrentPrincipal) -> list[TokenOut]:
    return [_token_out(token) for token in await service.list_tokens(session, principal.user_id)]


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke one of your tokens (server administrators: anyone's)",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def revoke_token(
    token_id: IdPath, session: DbSession, principal: CurrentPrincipal
) -> Response:
    await service.revoke_token(session, principal, token_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
