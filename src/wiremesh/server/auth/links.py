"""One-time links for people: sign in by e-mail, choose a (new) password.

A link carries a random token of which only a hash is kept; it works once and expires. A
mailed link goes through the mail outbox (the global SMTP settings, else those of an org the
person belongs to); once the link is used, the token is cut out of the stored mail, so no
usable secret stays at rest. ``wiremesh admin bootstrap`` prints one instead of mailing it.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth.models import SignInLink
from wiremesh.server.auth.secrets import issue_secret, parse_lookup, secret_matches
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail import outbox
from wiremesh.server.mail import repository as mail_repository
from wiremesh.server.mail.models import MailKind, MailOutbox
from wiremesh.server.mail.render import format_time, render
from wiremesh.server.orgs.models import Membership
from wiremesh.server.users.models import User

LINK_KIND = "wml"
MAILED_TTL = timedelta(minutes=30)
PRINTED_TTL = timedelta(hours=24)
USED_MARK = "(this link was used)"


class LinkPurpose(enum.StrEnum):
    SIGN_IN = "sign_in"
    PASSWORD = "password"  # noqa: S105 - a purpose, not a secret


def link_path(purpose: LinkPurpose, token: str) -> str:
    page = "/sign-in/link" if purpose is LinkPurpose.SIGN_IN else "/password/choose"
    return f"{page}?token={quote(token)}"


async def issue_link(
    session: AsyncSession,
    user: User,
    purpose: LinkPurpose,
    *,
    ttl: timedelta,
    now: datetime | None = None,
) -> tuple[SignInLink, str]:
    """A new link for ``user``; the token is returned once. Older links of the same purpose
    stop working, so only the newest mail counts."""
    now = now or utcnow()
    # Older links of this purpose stop working; spent and expired ones are forgotten.
    await session.execute(
        delete(SignInLink)
        .where(
            SignInLink.user_id == user.id,
            or_(
                SignInLink.purpose == purpose.value,
                SignInLink.used_at.is_not(None),
                SignInLink.expires_at <= now,
            ),
        )
        .execution_options(synchronize_session="fetch")  # drop them from the session too
    )
    issued = issue_secret(LINK_KIND)
    link = SignInLink(
        user_id=user.id,
        purpose=purpose.value,
        lookup=issued.lookup,
        secret_hash=issued.secret_hash,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(link)
    await session.flush()
    return link, issued.plaintext


async def mail_org_for(session: AsyncSession, user: User) -> tuple[bool, int | None]:
    """Whether mail can reach ``user`` and on whose behalf: the global SMTP settings first,
    else the first of the user's orgs that has its own."""
    if await mail_repository.resolve_settings(session, None) is not None:
        return True, None
    org_ids = (
        await session.execute(
            select(Membership.org_id).where(Membership.user_id == user.id).order_by(Membership.id)
        )
    ).scalars()
    for org_id in org_ids:
        if await mail_repository.resolve_settings(session, org_id) is not None:
            return True, org_id
    return False, None


async def mail_link(
    session: AsyncSession, user: User, purpose: LinkPurpose, base_url: str
) -> SignInLink | None:
    """Queue a link to ``user``; None when no SMTP settings can reach them."""
    reachable, org_id = await mail_org_for(session, user)
    if not reachable:
        return None
    link, token = await issue_link(session, user, purpose, ttl=MAILED_TTL)
    rendered = render(
        "sign_in",
        purpose=purpose.value,
        person=user.name,
        org_name=None,
        url=f"{base_url}{link_path(purpose, token)}",
        expires_at=format_time(link.expires_at),
    )
    mail = await outbox.enqueue(
        session, org_id=org_id, kind=MailKind.SIGN_IN.value, to=user.email, rendered=rendered
    )
    link.mail_id = mail.id
    await session.flush()
    return link


async def find_link(
    session: AsyncSession, token: str, purpose: LinkPurpose, *, now: datetime | None = None
) -> tuple[SignInLink, User] | None:
    """The usable link and its active user, or None (unknown, used, expired, other purpose)."""
    lookup = parse_lookup(LINK_KIND, token.strip())
    if lookup is None:
        return None
    row = (
        await session.execute(
            select(SignInLink, User)
            .join(User, User.id == SignInLink.user_id)
            .where(SignInLink.lookup == lookup)
        )
    ).one_or_none()
    if row is None:
        return None
    link, user = row
    now = now or utcnow()
    if (
        not secret_matches(token.strip(), link.secret_hash)
        or link.purpose != purpose.value
        or link.used_at is not None
        or link.expires_at <= now
        or not user.is_active
    ):
        return None
    return link, user


async def use_link(
    session: AsyncSession, token: str, purpose: LinkPurpose, *, now: datetime | None = None
) -> User | None:
    """Spend the link (once: a conditional UPDATE, so two clicks cannot both pass) and cut
    its token out of the mail that carried it. None when it is not usable."""
    found = await find_link(session, token, purpose, now=now)
    if found is None:
        return None
    link, user = found
    taken = await session.execute(
        update(SignInLink)
        .where(SignInLink.id == link.id, SignInLink.used_at.is_(None))
        .values(used_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) != 1:
        return None
    if link.mail_id is not None:
        mail = await session.get(MailOutbox, link.mail_id)
        if mail is not None:
            quoted = quote(token.strip())
            mail.text = mail.text.replace(quoted, USED_MARK)
            if mail.html is not None:
                mail.html = mail.html.replace(quoted, USED_MARK)
    await session.flush()
    return user


async def printed_password_link(session: AsyncSession, user: User, base_url: str) -> str:
    """A link for the operator to hand over (the first administrator's way into the
    browser): it lets ``user`` choose a password, once, within ``PRINTED_TTL``."""
    _link, token = await issue_link(session, user, LinkPurpose.PASSWORD, ttl=PRINTED_TTL)
    return f"{base_url}{link_path(LinkPurpose.PASSWORD, token)}"
