"""The mail outbox worker: sends due mails, each exactly once across replicas, with retries.

Each run lists due mails, then for each one:

1. claims it atomically (``UPDATE ... SET status='sending', claimed_until=... WHERE id=? AND
   (status='queued' AND due, or status='sending' AND lease expired)``) and reads the SMTP
   configuration its org uses now (org first, then global), in one short transaction;
2. talks to the SMTP server with no transaction open;
3. records the answer: ``sent``; ``queued`` again with exponential backoff; or ``failed``
   after a permanent 5xx refusal or too many attempts.

A replica that dies mid-send leaves its claim to expire; another replica then sends the mail
again. Delivery is therefore once, except when a process dies between the SMTP server's
acceptance and step 3; the Message-ID stays the same so receivers can spot such a resend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.config import Settings
from wiremesh.server.crypto import SecretKeyInvalid, SecretKeyMismatch
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail import outbox, repository, service
from wiremesh.server.mail.models import MailKind
from wiremesh.server.mail.outbox import RetryPolicy
from wiremesh.server.mail.transport import (
    DEFAULT_TIMEOUT,
    DeliveryReport,
    MailTransport,
    Outcome,
    OutgoingMail,
    ResolvedSMTP,
    SmtpTransport,
)
from wiremesh.server.orgs import invitations
from wiremesh.server.workers.periodic import PeriodicWorker

logger = logging.getLogger("wiremesh.server.workers.mail_outbox")


@dataclass(frozen=True, slots=True)
class OutboxOptions:
    poll_interval: float = 5.0
    batch_size: int = 50
    concurrency: int = 4
    send_timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def lease(self) -> timedelta:
        """Longer than any one send can take (the transport caps a send at 4 timeouts)."""
        return timedelta(seconds=self.send_timeout * 4 + 60)


class MailOutboxWorker(PeriodicWorker):
    """``start()``/``stop()`` from the app lifespan; ``run_once()`` sends what is due now."""

    name = "mail-outbox"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        transport: MailTransport | None = None,
        options: OutboxOptions | None = None,
    ) -> None:
        self.options = options or OutboxOptions()
        super().__init__(self.options.poll_interval)
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.transport: MailTransport = transport or SmtpTransport(
            timeout=self.options.send_timeout
        )
        self.claimant = settings.replica_id
        self.on_report: Callable[[str], None] | None = None
        """Told each delivery attempt's outcome (the app counts them)."""

    async def run_once(self) -> int:
        """Send every due mail (up to one batch); the number delivered."""
        async with self.sessionmaker() as session:  # a read: no commit, no write transaction
            mail_ids = await repository.due_mail_ids(session, utcnow(), self.options.batch_size)
        self._backlog = len(mail_ids) >= self.options.batch_size
        if not mail_ids:
            return 0
        limit = asyncio.Semaphore(self.options.concurrency)

        async def process(mail_id: int) -> bool:
            async with limit:
                return await self._process(mail_id)

        results = await asyncio.gather(*(process(mail_id) for mail_id in mail_ids))
        return sum(results)

    async def _process(self, mail_id: int) -> bool:
        try:
            return await self._deliver(mail_id)
        except Exception:
            logger.exception(
                "mail %s: processing failed; its claim expires and it is tried again", mail_id
            )
            return False

    async def _deliver(self, mail_id: int) -> bool:
        config: ResolvedSMTP | None = None
        report: DeliveryReport | None = None
        async with self.sessionmaker() as session:
            now = utcnow()
            claimed = await repository.claim_mail(
                session,
                mail_id,
                now=now,
                until=now + self.options.lease,
                claimed_by=self.claimant,
            )
            if not claimed:
                await session.rollback()
                return False  # another sender has it, or it is no longer due
            row = await repository.get_mail(session, mail_id)
            if row is None:  # pragma: no cover - deleted between claim and read (org deleted)
                await session.rollback()
                return False
            attempts, kind, org_id = row.attempts, row.kind, row.org_id
            mail: OutgoingMail | None = outbox.outgoing(row)
            if kind == MailKind.INVITATION.value:
                # The token is issued now and lives only in memory (see orgs.invitations).
                mail = await invitations.fill_token(session, outbox.outgoing(row), org_id)
            try:
                if mail is None:
                    report = DeliveryReport(
                        Outcome.CANCELLED,
                        "the invitation is no longer pending (accepted, revoked or expired)",
                        permanent=True,
                    )
                else:
                    config = await service.resolve(session, self.settings, org_id)
            except service.SmtpNotConfigured as exc:
                report = DeliveryReport(Outcome.SMTP_NOT_CONFIGURED, exc.message)
            except (SecretKeyMismatch, SecretKeyInvalid) as exc:
                report = DeliveryReport(Outcome.SECRET_KEY_MISMATCH, exc.message)
            await session.commit()

        if config is not None and mail is not None:
            try:
                report = await self.transport.send(config, mail)
            except Exception as exc:
                logger.exception("mail %s: the transport failed unexpectedly", mail_id)
                report = DeliveryReport(Outcome.ERROR, f"unexpected error: {type(exc).__name__}")
        assert report is not None

        async with self.sessionmaker() as session:
            status = await outbox.record_report(
                session,
                mail_id,
                self.claimant,
                report,
                attempts=attempts,
                policy=self.options.retry,
            )
            await session.commit()
        self._log(mail_id, kind, org_id, attempts, config, report, status)
        if self.on_report is not None:
            self.on_report(report.outcome.value)
        return report.delivered and status is not None

    @staticmethod
    def _log(
        mail_id: int,
        kind: str,
        org_id: int | None,
        attempts: int,
        config: ResolvedSMTP | None,
        report: DeliveryReport,
        status: object,
    ) -> None:
        via = f"{config.host}:{config.port} ({config.scope})" if config is not None else "-"
        if status is None:
            logger.warning(
                "mail %s (%s, org %s): lost its claim while sending via %s; outcome %s",
                mail_id, kind, org_id, via, report.outcome.value,
            )  # fmt: skip
        elif report.delivered:
            logger.info(
                "mail %s (%s, org %s): delivered via %s on attempt %d",
                mail_id, kind, org_id, via, attempts,
            )  # fmt: skip
        else:
            logger.warning(
                "mail %s (%s, org %s): attempt %d via %s: %s: %s -> %s",
                mail_id, kind, org_id, attempts, via, report.outcome.value, report.message,
                getattr(status, "value", status),
            )  # fmt: skip
