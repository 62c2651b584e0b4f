"""The outbox: every mail is stored first, then sent by the worker with retries.

A mail goes ``queued`` -> ``sending`` (claimed, with a lease) -> ``sent``, or back to
``queued`` with a later ``next_attempt_at`` after a temporary failure, or ``failed`` after a
permanent refusal (5xx) or too many attempts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import Conflict, Invalid, NotFound
from wiremesh.server.mail import repository
from wiremesh.server.mail.models import MailOutbox, MailStatus
from wiremesh.server.mail.outcomes import DeliveryReport
from wiremesh.server.mail.render import RenderedMail
from wiremesh.server.mail.transport import OutgoingMail
from wiremesh.server.tenancy import TenantScope

MAX_RECIPIENT_LENGTH = 320


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Jittered exponential backoff: ``base * 2**(attempt-1)``, capped, then scaled by a
    random factor in [0.5, 1] so mails that failed together do not return together.
    ``failed`` after ``max_attempts`` or once ``give_up_after`` has passed since queueing."""

    max_attempts: int = 100
    base_delay: float = 30.0
    max_delay: float = 3600.0
    give_up_after: timedelta = timedelta(hours=72)
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempts: int) -> timedelta:
        exponent = min(max(attempts - 1, 0), 30)
        ceiling = min(self.max_delay, self.base_delay * (2**exponent))
        return timedelta(seconds=ceiling * (0.5 + self.jitter() / 2))

    def gives_up(self, attempts: int, queued_at: datetime | None, now: datetime) -> bool:
        if attempts >= self.max_attempts:
            return True
        return queued_at is not None and now - _aware(queued_at) >= self.give_up_after


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def enqueue(
    session: AsyncSession,
    *,
    org_id: int | None,
    kind: str,
    to: str,
    rendered: RenderedMail,
    now: datetime | None = None,
) -> MailOutbox:
    """Store one mail for one recipient; the worker sends it after the transaction commits."""
    row = MailOutbox(
        org_id=org_id,
        kind=kind,
        to=to[:MAX_RECIPIENT_LENGTH],
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        status=MailStatus.QUEUED.value,
        next_attempt_at=now or utcnow(),
    )
    session.add(row)
    await session.flush()
    return row


def outgoing(row: MailOutbox) -> OutgoingMail:
    """The stored mail as the transport sends it; its Message-ID is stable across retries."""
    stamp = int(row.created_at.timestamp()) if row.created_at is not None else 0
    return OutgoingMail(
        to=row.to,
        subject=row.subject,
        text=row.text,
        html=row.html,
        reference=f"wiremesh.{row.id}.{stamp}",
    )


async def record_report(
    session: AsyncSession,
    mail_id: int,
    claimed_by: str,
    report: DeliveryReport,
    *,
    attempts: int,
    policy: RetryPolicy,
    retry: bool = True,
    queued_at: datetime | None = None,
    now: datetime | None = None,
) -> MailStatus | None:
    """Store what the send did; None when this sender had lost its claim meanwhile."""
    now = now or utcnow()
    values: dict[str, Any] = {"last_outcome": report.outcome.value}
    if report.delivered:
        status = MailStatus.SENT
        values.update(sent_at=now, last_error=None)
    elif report.permanent or not retry or policy.gives_up(attempts, queued_at, now):
        status = MailStatus.FAILED
        values["last_error"] = report.message[:1024]
    else:
        status = MailStatus.QUEUED
        values.update(
            last_error=report.message[:1024], next_attempt_at=now + policy.delay(attempts)
        )
    values["status"] = status.value
    if not await repository.finish_claim(session, mail_id, claimed_by, values):
        return None
    return status


async def list_mail(
    session: AsyncSession,
    scope: TenantScope,
    *,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[MailOutbox]:
    return await repository.list_mail(session, scope, status=status, limit=limit, offset=offset)


RETRYABLE = (MailStatus.FAILED.value, MailStatus.QUEUED.value)


async def retry_mail(session: AsyncSession, scope: TenantScope, mail_id: int) -> MailOutbox:
    """Send one of the scope's mails again now: a failed one from its first attempt (queued
    anew: its give-up horizon restarts), a queued one without waiting out its backoff."""
    row = await repository.get_visible_mail(session, scope, mail_id)
    if row is None:
        raise NotFound("mail")
    if row.status not in RETRYABLE:
        raise Conflict(
            "mail_not_retryable", f"mail {mail_id} is {row.status}; only failed or queued mails"
        )
    await repository.retry_mails(session, scope, utcnow(), status=row.status, mail_id=mail_id)
    refreshed = await repository.get_visible_mail(session, scope, mail_id)
    assert refreshed is not None
    return refreshed


async def retry_all(session: AsyncSession, scope: TenantScope, status: str) -> int:
    """Send every one of the scope's mails in ``status`` (failed or queued) again now."""
    if status not in RETRYABLE:
        raise Invalid("invalid_status", "only failed or queued mails can be retried")
    return await repository.retry_mails(session, scope, utcnow(), status=status)
