"""Mail: queries only (SMTP settings, the outbox)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.db.batches import delete_batch
from wiremesh.server.mail.models import MailKind, MailOutbox, MailStatus, SMTPSettings
from wiremesh.server.tenancy import TenantScope, owned_by, visible_to

_QUEUED = MailStatus.QUEUED.value
_SENDING = MailStatus.SENDING.value


# --- SMTP settings ------------------------------------------------------------------------------


async def get_settings(session: AsyncSession, scope: TenantScope) -> SMTPSettings | None:
    """The scope's own row, active or not: an org's, or the server's global one."""
    statement = select(SMTPSettings).where(owned_by(scope, SMTPSettings.org_id))
    return (await session.execute(statement)).scalar_one_or_none()


async def resolve_settings(session: AsyncSession, org_id: int | None) -> SMTPSettings | None:
    """The seed's query: the org's active row first, else the active global row.

    ``WHERE (org_id = :org OR org_id IS NULL) AND is_active ORDER BY org_id DESC NULLS LAST
    LIMIT 1``; with no org, only the active global row.
    """
    scope = (
        SMTPSettings.org_id.is_(None)
        if org_id is None
        else or_(SMTPSettings.org_id == org_id, SMTPSettings.org_id.is_(None))
    )
    statement = (
        select(SMTPSettings)
        .where(scope, SMTPSettings.is_active.is_(True))
        .order_by(SMTPSettings.org_id.desc().nulls_last())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def delete_settings(session: AsyncSession, settings_id: int) -> None:
    await session.execute(delete(SMTPSettings).where(SMTPSettings.id == settings_id))


async def settings_with_password(session: AsyncSession) -> Sequence[SMTPSettings]:
    statement = (
        select(SMTPSettings)
        .where(SMTPSettings.smtp_password.is_not(None))
        .order_by(SMTPSettings.id)
    )
    return (await session.execute(statement)).scalars().all()


# --- the outbox ---------------------------------------------------------------------------------


def _claimable(now: datetime) -> Any:
    """Queued and due, or stuck in ``sending`` past its lease (its sender died)."""
    return or_(
        and_(MailOutbox.status == _QUEUED, MailOutbox.next_attempt_at <= now),
        and_(MailOutbox.status == _SENDING, MailOutbox.claimed_until < now),
    )


def _paused_org_ids() -> Any:
    """Orgs whose active settings are paused: their mails wait (see ``mail.pausing``)."""
    return select(SMTPSettings.org_id).where(
        SMTPSettings.org_id.is_not(None),
        SMTPSettings.is_active.is_(True),
        SMTPSettings.paused_at.is_not(None),
    )


async def due_mails(
    session: AsyncSession,
    now: datetime,
    *,
    limit: int,
    skip_ids: Collection[int] = (),
    skip_orgs: Collection[int | None] = (),
) -> list[tuple[int, int | None]]:
    """Claimable mails, oldest due first, as (id, org_id): none of ``skip_ids`` (being sent
    here), none of the orgs in ``skip_orgs`` (``None`` = the server's own mails), none held by
    paused settings (except the mails that say so, which go through the global settings)."""
    statement = select(MailOutbox.id, MailOutbox.org_id).where(
        _claimable(now),
        or_(
            MailOutbox.org_id.is_(None),
            MailOutbox.kind == MailKind.SMTP_PAUSED.value,
            MailOutbox.org_id.not_in(_paused_org_ids()),
        ),
    )
    if skip_ids:
        statement = statement.where(MailOutbox.id.not_in(list(skip_ids)))
    org_ids = [org_id for org_id in skip_orgs if org_id is not None]
    if None in skip_orgs:
        statement = statement.where(MailOutbox.org_id.is_not(None))
    if org_ids:
        statement = statement.where(
            or_(MailOutbox.org_id.is_(None), MailOutbox.org_id.not_in(org_ids))
        )
    statement = statement.order_by(MailOutbox.next_attempt_at, MailOutbox.id).limit(limit)
    return [(mail_id, org_id) for mail_id, org_id in await session.execute(statement)]


async def take_back_claims(session: AsyncSession, claimed_by: str, now: datetime) -> int:
    """Queue again, due now, the mails a replica of this identity left ``sending`` (it
    stopped or died mid-send); the number of mails. Test mails are left to their lease: a
    request or a CLI command on this host (same identity) may be sending one right now."""
    result = await session.execute(
        update(MailOutbox)
        .where(
            MailOutbox.status == _SENDING,
            MailOutbox.claimed_by == claimed_by,
            MailOutbox.kind != MailKind.TEST.value,
        )
        .values(status=_QUEUED, claimed_until=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def release_claim(
    session: AsyncSession, mail_id: int, claimed_by: str, now: datetime
) -> bool:
    """Give a mail back untried (its send was stopped before any data went out)."""
    result = await session.execute(
        update(MailOutbox)
        .where(
            MailOutbox.id == mail_id,
            MailOutbox.status == _SENDING,
            MailOutbox.claimed_by == claimed_by,
        )
        .values(
            status=_QUEUED,
            claimed_until=None,
            next_attempt_at=now,
            attempts=MailOutbox.attempts - 1,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def claim_mail(
    session: AsyncSession, mail_id: int, *, now: datetime, until: datetime, claimed_by: str
) -> bool:
    """Take one mail for sending; True for exactly one claimer, however many race for it."""
    result = await session.execute(
        update(MailOutbox)
        .where(MailOutbox.id == mail_id, _claimable(now))
        .values(
            status=_SENDING,
            claimed_until=until,
            claimed_by=claimed_by,
            attempts=MailOutbox.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def get_mail(session: AsyncSession, mail_id: int) -> MailOutbox | None:
    statement = (
        select(MailOutbox).where(MailOutbox.id == mail_id).execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def finish_claim(
    session: AsyncSession, mail_id: int, claimed_by: str, values: dict[str, Any]
) -> bool:
    """Record the end of a send, only while this sender still holds the claim."""
    result = await session.execute(
        update(MailOutbox)
        .where(
            MailOutbox.id == mail_id,
            MailOutbox.status == _SENDING,
            MailOutbox.claimed_by == claimed_by,
        )
        .values(claimed_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def list_mail(
    session: AsyncSession, scope: TenantScope, *, status: str | None, limit: int, offset: int
) -> Sequence[MailOutbox]:
    """Newest first: one org's mails, or every mail in the server's scope."""
    statement = select(MailOutbox).where(visible_to(scope, MailOutbox.org_id))
    if status is not None:
        statement = statement.where(MailOutbox.status == status)
    statement = statement.order_by(MailOutbox.id.desc()).limit(limit).offset(offset)
    return (await session.execute(statement)).scalars().all()


async def get_visible_mail(
    session: AsyncSession, scope: TenantScope, mail_id: int
) -> MailOutbox | None:
    statement = (
        select(MailOutbox)
        .where(MailOutbox.id == mail_id, visible_to(scope, MailOutbox.org_id))
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def retry_mails(
    session: AsyncSession,
    scope: TenantScope,
    now: datetime,
    *,
    status: str,
    mail_id: int | None = None,
) -> int:
    """Make the scope's mails in ``status`` due now: failed ones from their first attempt,
    queued ones without waiting out their backoff. The number of mails."""
    values: dict[str, Any] = {"next_attempt_at": now}
    if status == MailStatus.FAILED.value:
        values.update(status=_QUEUED, attempts=0, claimed_by=None, created_at=now)
    statement = update(MailOutbox).where(
        MailOutbox.status == status, visible_to(scope, MailOutbox.org_id)
    )
    if mail_id is not None:
        statement = statement.where(MailOutbox.id == mail_id)
    result = await session.execute(
        statement.values(**values).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_finished(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` sent or failed mails finished before ``before``: their bodies
    (an invitation's link among them) are kept no longer than the retention."""
    finished = MailOutbox.status.in_([MailStatus.SENT.value, MailStatus.FAILED.value])
    ended = func.coalesce(MailOutbox.sent_at, MailOutbox.next_attempt_at)
    return await delete_batch(session, MailOutbox.id, finished, ended < before, batch_size=limit)
