"""Dashboard sessions: a random secret in an HTTP-only cookie, its hash in ``web_session``.

The CSRF token of a session is derived from the session's secret (an HMAC), so it is tied
to that session, changes with it, and needs no storage: only the holder of the cookie can
know it, and a page of another site can neither read the cookie nor the token.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth.models import WebSession
from wiremesh.server.auth.secrets import issue_secret, parse_lookup, secret_matches
from wiremesh.server.db.base import utcnow
from wiremesh.server.users.models import User

SESSION_KIND = "wms"
SESSION_TTL = timedelta(hours=12)


async def start_session(
    session: AsyncSession, user: User, *, now: datetime | None = None
) -> tuple[WebSession, str]:
    """A new session for ``user``; the secret is returned once (for the cookie)."""
    now = now or utcnow()
    # The user's ended and expired sessions are forgotten here: no sweeper needed.
    await session.execute(
        delete(WebSession)
        .where(
            WebSession.user_id == user.id,
            or_(WebSession.ended_at.is_not(None), WebSession.expires_at <= now),
        )
        .execution_options(synchronize_session="fetch")  # drop them from the session too
    )
    issued = issue_secret(SESSION_KIND)
    row = WebSession(
        user_id=user.id,
        lookup=issued.lookup,
        secret_hash=issued.secret_hash,
        created_at=now,
        expires_at=now + SESSION_TTL,
    )
    session.add(row)
    await session.flush()
    return row, issued.plaintext


async def find_session(
    session: AsyncSession, secret: str, *, now: datetime | None = None
) -> tuple[WebSession, User] | None:
    """The live session and its active user, or None (unknown, ended, expired, disabled)."""
    lookup = parse_lookup(SESSION_KIND, secret)
    if lookup is None:
        return None
    row = (
        await session.execute(
            select(WebSession, User)
            .join(User, User.id == WebSession.user_id)
            .where(WebSession.lookup == lookup)
        )
    ).one_or_none()
    if row is None:
        return None
    web_session, user = row
    now = now or utcnow()
    if (
        not secret_matches(secret, web_session.secret_hash)
        or web_session.ended_at is not None
        or web_session.expires_at <= now
        or not user.is_active
    ):
        return None
    return web_session, user


async def end_session(session: AsyncSession, session_id: int) -> None:
    await session.execute(
        update(WebSession)
        .where(WebSession.id == session_id, WebSession.ended_at.is_(None))
        .values(ended_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def end_all_sessions(session: AsyncSession, user_id: int) -> None:
    """Sign a user out everywhere (after a password change)."""
    await session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
        .values(ended_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def csrf_token(secret: str) -> str:
    """The session's CSRF token: an HMAC of a fixed label under the session's secret."""
    return hmac.new(secret.encode(), b"wiremesh-csrf", hashlib.sha256).hexdigest()


def csrf_matches(secret: str, token: str) -> bool:
    return hmac.compare_digest(csrf_token(secret), token)
