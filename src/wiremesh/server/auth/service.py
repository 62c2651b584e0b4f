"""API tokens: issue, authenticate, revoke."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth.models import ApiToken
from wiremesh.server.auth.secrets import issue_secret, parse_lookup, secret_matches
from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import ApiError
from wiremesh.server.users.models import User

TOKEN_KIND = "wm"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _unauthenticated() -> ApiError:
    return ApiError(401, "invalid_token", "the API token is invalid, expired or revoked")


async def authenticate_token(session: AsyncSession, plaintext: str) -> tuple[ApiToken, User]:
    """The token and its user, or 401. Unknown, wrong, expired and revoked look the same."""
    lookup = parse_lookup(TOKEN_KIND, plaintext)
    if lookup is None:
        raise _unauthenticated()
    row = (
        await session.execute(
            select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(
                ApiToken.lookup == lookup
            )
        )
    ).one_or_none()
    if row is None:
        raise _unauthenticated()
    token, user = row.tuple()
    now = utcnow()
    if (
        not secret_matches(plaintext, token.secret_hash)
        or token.revoked_at is not None
        or (token.expires_at is not None and token.expires_at <= now)
        or not user.is_active
    ):
        raise _unauthenticated()
    return token, user


async def create_token(
    session: AsyncSession, user: User, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user``; the plaintext is returned once and never stored."""
    issued = issue_secret(TOKEN_KIND)
    token = ApiToken(
        user_id=user.id,
        name=name,
        lookup=issued.lookup,
        secret_hash=issued.secret_hash,
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    return token, issued.plaintext
