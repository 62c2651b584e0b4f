"""Pausing an organization's SMTP settings after the relay refused their login.

A 5xx answer to AUTH does not get better by trying again, and trying again (every mail, every
round) can lock the account at the relay. So the first such answer pauses the settings: the
org's mails stay queued (``repository.due_mails`` skips them), its owners and admins are told
once through the global settings, and saving the settings or resuming them ends the pause.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import Conflict, NotFound
from wiremesh.server.mail import outbox, repository
from wiremesh.server.mail.models import MailKind, MailStatus, SMTPSettings
from wiremesh.server.mail.outcomes import DeliveryReport
from wiremesh.server.mail.render import format_time, render
from wiremesh.server.mail.transport import ResolvedSMTP
from wiremesh.server.orgs import repository as orgs_repository
from wiremesh.server.orgs.models import Organization
from wiremesh.server.tenancy import TenantScope


async def pause_on_auth_failure(
    session: AsyncSession,
    mail_id: int,
    claimed_by: str,
    config: ResolvedSMTP,
    report: DeliveryReport,
    now: datetime | None = None,
) -> MailStatus | None:
    """Put the mail back in the queue (it waits for the pause to end) and pause the settings
    it was sent with, unless they changed meanwhile; tell the org's admins once."""
    assert config.org_id is not None
    now = now or utcnow()
    requeued = await repository.finish_claim(
        session,
        mail_id,
        claimed_by,
        {
            "status": MailStatus.QUEUED.value,
            "last_outcome": report.outcome.value,
            "last_error": report.message[:1024],
            "next_attempt_at": now,
        },
    )
    paused = await session.execute(
        update(SMTPSettings)
        .where(
            SMTPSettings.id == config.settings_id,
            SMTPSettings.paused_at.is_(None),
            # Saved anew during the send: the refused login was the old one.
            SMTPSettings.updated_at == config.settings_version,
        )
        .values(paused_at=now, paused_reason=report.message[:1024])
        .execution_options(synchronize_session=False)
    )
    if getattr(paused, "rowcount", 0) == 1:
        org = await session.get(Organization, config.org_id)
        rendered = render(
            "smtp_paused",
            org_name=org.name if org is not None else str(config.org_id),
            org_id=config.org_id,
            server=f"{config.host}:{config.port}",
            username=config.username or "-",
            reason=report.message,
            at=format_time(now),
        )
        for address in await orgs_repository.admin_addresses(session, config.org_id):
            await outbox.enqueue(
                session,
                org_id=config.org_id,
                kind=MailKind.SMTP_PAUSED.value,
                to=address,
                rendered=rendered,
                now=now,
            )
    return MailStatus.QUEUED if requeued else None


async def resume(session: AsyncSession, scope: TenantScope) -> SMTPSettings:
    """End a pause without changing the settings (the relay's side was fixed)."""
    row = await repository.get_settings(session, scope)
    if row is None:
        raise NotFound("SMTP settings of this organization")
    if row.paused_at is None:
        raise Conflict("smtp_not_paused", "these SMTP settings are not paused")
    row.paused_at = None
    row.paused_reason = None
    await session.flush()
    return row
