"""Invitations to join an org: mailed with an accept token, of which only a hash is kept.

An invitation is single use, expires (7 days by default), and is accepted by a signed-in
user whose e-mail address is the invited one; accepting creates the membership. The mail goes
through the mail outbox, with the org's SMTP settings.

The token is never stored in plaintext, not even in the outbox: the queued mail holds a
placeholder naming the invitation where the token goes, and the outbox worker issues a fresh
token for each send attempt (``fill_token``), keeps its hash on the invitation and puts the
token only into the message it hands to the SMTP server. A retry issues a new token, so only
the last mail sent works.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth.principal import Principal
from wiremesh.server.auth.secrets import issue_secret, parse_lookup, secret_matches
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import ApiError, Conflict, Forbidden, NotFound
from wiremesh.server.mail import outbox, repository
from wiremesh.server.mail.models import MailKind, MailOutbox
from wiremesh.server.mail.render import format_time, render
from wiremesh.server.mail.service import SmtpNotConfigured, validate_address
from wiremesh.server.mail.transport import OutgoingMail
from wiremesh.server.orgs.models import Membership, Organization, OrgInvitation, OrgRole
from wiremesh.server.users.models import User

TOKEN_KIND = "wminv"  # noqa: S105 - a prefix, not a secret
# Where the token goes in a queued mail, naming the invitation: replaced when the mail is sent.
_PLACEHOLDER = re.compile(r"WIREMESH-INVITATION-([0-9]{1,10})-TOKEN")


def token_placeholder(invitation_id: int) -> str:
    return f"WIREMESH-INVITATION-{invitation_id}-TOKEN"


DEFAULT_TTL = timedelta(days=7)
MAX_TTL = timedelta(days=90)


def public_base_url(settings: Settings) -> str:
    """Where links in mails point: ``public_url``, else the address the server listens on."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def _invalid_token() -> ApiError:
    return ApiError(404, "invalid_invitation", "the invitation token is not valid")


async def create_invitation(
    session: AsyncSession,
    settings: Settings,
    org_id: int,
    *,
    email: str,
    role: OrgRole,
    caller_role: OrgRole,
    invited_by_user_id: int | None,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> tuple[OrgInvitation, MailOutbox]:
    """Store an invitation and queue its mail. Earlier pending invitations of the same address
    to the same org are revoked, so only the newest link works."""
    if role is OrgRole.OWNER and caller_role is not OrgRole.OWNER:
        raise Forbidden("only an owner can invite an owner")
    if not timedelta(minutes=5) <= ttl <= MAX_TTL:
        raise ApiError(422, "invalid_expiry", "an invitation expires after 5 minutes to 90 days")
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFound("organization")
    address = validate_address(email, code="invalid_email", what="the address").lower()
    member = (
        await session.execute(
            select(Membership.id)
            .join(User, User.id == Membership.user_id)
            .where(Membership.org_id == org_id, User.email == address)
        )
    ).scalar_one_or_none()
    if member is not None:
        raise Conflict("already_member", f"{address} is already a member of this organization")
    if await repository.resolve_settings(session, org_id) is None:
        raise SmtpNotConfigured(org_id)

    now = now or utcnow()
    await session.execute(
        update(OrgInvitation)
        .where(
            OrgInvitation.org_id == org_id,
            OrgInvitation.email == address,
            OrgInvitation.accepted_at.is_(None),
            OrgInvitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    # The plaintext of this first secret is dropped: nobody holds a usable token until the
    # outbox worker sends the mail (``fill_token``).
    issued = issue_secret(TOKEN_KIND)
    invitation = OrgInvitation(
        org_id=org_id,
        email=address,
        role=role.value,
        lookup=issued.lookup,
        token_hash=issued.secret_hash,
        invited_by_user_id=invited_by_user_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    await session.flush()

    inviter = await session.get(User, invited_by_user_id) if invited_by_user_id else None
    base = public_base_url(settings)
    rendered = render(
        "invitation",
        org_name=org.name,
        inviter=f"{inviter.name} ({inviter.email})" if inviter is not None else "An administrator",
        role=role.value,
        email=address,
        token=token_placeholder(invitation.id),
        accept_url=f"{base}/invitations/accept?token={token_placeholder(invitation.id)}",
        api_url=f"{base}/api/v1/invitations/accept",
        expires_at=format_time(invitation.expires_at),
    )
    mail = await outbox.enqueue(
        session, org_id=org_id, kind=MailKind.INVITATION.value, to=address, rendered=rendered
    )
    return invitation, mail


async def fill_token(
    session: AsyncSession, mail: OutgoingMail, org_id: int | None, *, now: datetime | None = None
) -> OutgoingMail | None:
    """The invitation mail with a fresh token in place of its placeholder, the token's hash
    stored on the invitation; None when the invitation is no longer pending (accepted,
    revoked, expired or deleted: the mail is moot). Called by the sender just before the
    send, in the transaction that claims the mail, so the token exists only in memory."""
    found = _PLACEHOLDER.search(mail.text)
    if found is None:
        return None
    placeholder = found.group()
    invitation = await session.get(OrgInvitation, int(found.group(1)))
    now = now or utcnow()
    pending = (
        invitation is not None
        and invitation.org_id == org_id
        and invitation.accepted_at is None
        and invitation.revoked_at is None
        and invitation.expires_at > now
    )
    if invitation is None or not pending:
        return None
    issued = issue_secret(TOKEN_KIND)
    invitation.lookup = issued.lookup
    invitation.token_hash = issued.secret_hash
    await session.flush()
    token = quote(issued.plaintext)
    return replace(
        mail,
        text=mail.text.replace(placeholder, token),
        html=None if mail.html is None else mail.html.replace(placeholder, token),
    )


async def list_pending(
    session: AsyncSession, org_id: int, *, now: datetime | None = None
) -> Sequence[OrgInvitation]:
    now = now or utcnow()
    statement = (
        select(OrgInvitation)
        .where(
            OrgInvitation.org_id == org_id,
            OrgInvitation.accepted_at.is_(None),
            OrgInvitation.revoked_at.is_(None),
            OrgInvitation.expires_at > now,
        )
        .order_by(OrgInvitation.id)
    )
    return (await session.execute(statement)).scalars().all()


async def revoke_invitation(session: AsyncSession, org_id: int, invitation_id: int) -> None:
    row = await session.get(OrgInvitation, invitation_id)
    if row is None or row.org_id != org_id:
        raise NotFound("invitation")
    if row.accepted_at is not None:
        raise Conflict("invitation_used", "the invitation was already accepted")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()


async def find_pending(
    session: AsyncSession, token: str, *, now: datetime | None = None
) -> OrgInvitation | None:
    """The pending invitation a token opens, without spending it (the accept page shows what
    it invites to); None when the token is unknown, used, revoked or expired."""
    lookup = parse_lookup(TOKEN_KIND, token.strip())
    if lookup is None:
        return None
    invitation = (
        await session.execute(select(OrgInvitation).where(OrgInvitation.lookup == lookup))
    ).scalar_one_or_none()
    if invitation is None or not secret_matches(token.strip(), invitation.token_hash):
        return None
    now = now or utcnow()
    if (
        invitation.accepted_at is not None
        or invitation.revoked_at is not None
        or invitation.expires_at <= now
    ):
        return None
    return invitation


async def accept_invitation(
    session: AsyncSession, principal: Principal, token: str, *, now: datetime | None = None
) -> Membership:
    """Join the org as the invited role; the caller's e-mail must be the invited address."""
    lookup = parse_lookup(TOKEN_KIND, token.strip())
    if lookup is None:
        raise _invalid_token()
    invitation = (
        await session.execute(select(OrgInvitation).where(OrgInvitation.lookup == lookup))
    ).scalar_one_or_none()
    if invitation is None or not secret_matches(token.strip(), invitation.token_hash):
        raise _invalid_token()
    now = now or utcnow()
    if invitation.revoked_at is not None:
        raise ApiError(410, "invitation_revoked", "the invitation was revoked")
    if invitation.accepted_at is not None:
        raise Conflict("invitation_used", "the invitation was already accepted")
    if invitation.expires_at <= now:
        raise ApiError(410, "invitation_expired", "the invitation has expired; ask for a new one")
    user = await session.get(User, principal.user_id)
    if user is None or not user.is_active:
        raise Forbidden("accepting an invitation needs a signed-in user")
    if user.email.lower() != invitation.email.lower():
        raise ApiError(
            403,
            "invitation_email_mismatch",
            "the invitation is for another e-mail address; sign in as the invited user",
        )
    existing = (
        await session.execute(
            select(Membership.id).where(
                Membership.org_id == invitation.org_id, Membership.user_id == user.id
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        raise Conflict("already_member", "you are already a member of this organization")
    taken = await session.execute(
        update(OrgInvitation)
        .where(
            OrgInvitation.id == invitation.id,
            OrgInvitation.accepted_at.is_(None),
            OrgInvitation.revoked_at.is_(None),
        )
        .values(accepted_at=now, accepted_by_user_id=user.id)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) != 1:
        raise Conflict("invitation_used", "the invitation was already accepted")
    membership = Membership(org_id=invitation.org_id, user_id=user.id, role=invitation.role)
    session.add(membership)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("already_member", "you are already a member of this organization") from None
    return membership
