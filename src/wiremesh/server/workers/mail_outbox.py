"""The mail outbox worker: sends due mails continuously, each once across replicas, fairly.

Sends run as independent tasks, at most ``max_in_flight`` at once and ``max_in_flight_per_org``
for any one organization (the server's own mails count as one more): a relay that hangs
holds only its own organization's slots, and every other mail is picked up at the next poll
or as soon as any send ends. Each send:

1. claims its mail atomically (``UPDATE ... SET status='sending', claimed_until=... WHERE id=?
   AND (status='queued' AND due, or status='sending' AND lease expired)``) and reads the SMTP
   configuration its org uses now (org first, then global), in one short transaction;
2. talks to the SMTP server with no transaction open;
3. records the answer: ``sent``; ``queued`` again with jittered backoff; or ``failed`` after
   a permanent 5xx refusal, too many attempts or the give-up horizon. A 5xx answer to AUTH
   pauses the organization's settings instead (see ``mail.pausing``).

Stopping cancels sends that have not sent their data yet (their mails go back to the queue
untouched) and waits up to ``shutdown_grace`` for the reply of those that have; a reply that
arrives is recorded. On start, the replica takes back the claims of its previous life at
once. docs/mail.md describes the one duplicate window left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.config import Settings
from wiremesh.server.crypto import (
    SecretKeyInvalid,
    SecretKeyMismatch,
    missing_key_file,
    missing_key_message,
)
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail import outbox, pausing, repository, service
from wiremesh.server.mail.models import MailKind, MailStatus
from wiremesh.server.mail.outbox import RetryPolicy
from wiremesh.server.mail.outcomes import DeliveryReport, Outcome
from wiremesh.server.mail.transport import (
    DEFAULT_TIMEOUT,
    MailTransport,
    OutgoingMail,
    ResolvedSMTP,
    SendProgress,
    SmtpTransport,
)
from wiremesh.server.orgs import invitations
from wiremesh.server.workers.periodic import PeriodicWorker

logger = logging.getLogger("wiremesh.server.workers.mail_outbox")

_T = TypeVar("_T")

# Due mails read per query and per free slot: enough to skip over busy organizations.
_ROWS_PER_SLOT = 4
_MAX_QUERIES_PER_ROUND = 8


@dataclass(frozen=True, slots=True)
class OutboxOptions:
    poll_interval: float = 5.0
    max_in_flight: int = 16
    max_in_flight_per_org: int = 2
    send_timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float | None = None
    greeting_timeout: float | None = None
    claim_lease: float | None = None
    shutdown_grace: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxOptions:
        return cls(
            poll_interval=settings.mail_poll_interval,
            max_in_flight=settings.mail_max_in_flight,
            max_in_flight_per_org=settings.mail_max_in_flight_per_org,
            send_timeout=settings.mail_command_timeout,
            connect_timeout=settings.mail_connect_timeout,
            greeting_timeout=settings.mail_greeting_timeout,
            claim_lease=settings.mail_claim_lease,
            shutdown_grace=settings.mail_shutdown_grace,
            retry=RetryPolicy(
                max_attempts=settings.mail_max_attempts,
                base_delay=settings.mail_retry_base_delay,
                max_delay=settings.mail_retry_max_delay,
                give_up_after=timedelta(hours=settings.mail_give_up_after_hours),
            ),
        )

    def transport(self) -> SmtpTransport:
        return SmtpTransport(
            timeout=self.send_timeout,
            connect_timeout=self.connect_timeout,
            greeting_timeout=self.greeting_timeout,
        )

    @property
    def lease(self) -> timedelta:
        """Longer than any one send can take, unless configured."""
        if self.claim_lease is not None:
            return timedelta(seconds=self.claim_lease)
        return timedelta(seconds=self.transport().longest_send + 60)


@dataclass(eq=False)
class _Send:
    mail_id: int
    org_key: int | None
    progress: SendProgress
    task: asyncio.Task[bool] | None = None


class MailOutboxWorker(PeriodicWorker):
    """``start()``/``stop()`` from the app lifespan; ``run_once()`` sends what is due now.

    A ``PeriodicWorker`` by its interface only: its loop starts sends without waiting for
    them, and its stop knows which sends may still get a reply."""

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
        self.transport: MailTransport = transport or self.options.transport()
        self.claimant = settings.replica_id
        self._sends: dict[int, _Send] = {}
        self._per_org: Counter[int | None] = Counter()
        self._recording: set[asyncio.Future[Any]] = set()
        self._wake = asyncio.Event()
        self._stopping_now = False
        self._loop_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
    ) -> MailOutboxWorker:
        return cls(sessionmaker, settings, options=OutboxOptions.from_settings(settings))

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def in_flight(self) -> int:
        return len(self._sends)

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Take back this replica's own claims (it died or stopped mid-send), then run."""
        if self.running:
            return
        self._stopping_now = False
        async with self.sessionmaker() as session:
            taken = await repository.take_back_claims(session, self.claimant, utcnow())
            await session.commit()
            stored = len(await repository.settings_with_password(session))
        missing = missing_key_file(self.settings)
        if stored and missing is not None:
            # Not fatal for the server (agents and the API work without mail), but every
            # mail through a password-protected relay fails until the key is back.
            logger.error("%s", missing_key_message(missing, stored))
        if taken:
            logger.warning(
                "%d mail(s) were being sent when this replica (%s) last stopped; sending them "
                "again now (a receiver may get one twice, with the same Message-ID)",
                taken,
                self.claimant,
            )
        self._loop_task = asyncio.create_task(self._loop(), name=f"wiremesh-{self.name}")

    async def stop(self) -> None:
        """Start no send; cancel those that sent no data yet; give the others
        ``shutdown_grace`` seconds for their reply; cancel what is left."""
        self._stopping_now = True
        self._wake.set()
        loop_task, self._loop_task = self._loop_task, None
        if loop_task is not None:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        sends = list(self._sends.values())
        for send in sends:
            if not send.progress.data_sent and send.task is not None:
                send.task.cancel()
        tasks = [send.task for send in sends if send.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.options.shutdown_grace)
            for task in pending:
                logger.warning(
                    "mail-outbox: stopping without the reply to a mail's data; it is sent "
                    "again when this replica starts (or after its claim lease elsewhere)"
                )
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping_now:
            self._wake.clear()
            try:
                await self._dispatch()
            except Exception:
                logger.exception(
                    "%s: reading due mails failed; trying again in %.1fs",
                    self.name,
                    self.options.poll_interval,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.options.poll_interval)

    async def run_once(self) -> int:
        """Send every mail due now, each once, within the bounds, and wait for them: the
        number delivered. For tests and one-off runs; the server runs ``start()``."""
        tried: set[int] = set()
        pending = set(await self._dispatch(tried))
        delivered = 0
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            delivered += sum(task.result() for task in done)
            pending |= set(await self._dispatch(tried))
        return delivered

    # --- dispatching --------------------------------------------------------------------------

    async def _dispatch(self, tried: set[int] | None = None) -> list[asyncio.Task[bool]]:
        """Start sends for due mails while slots are free; each org within its bound.
        ``tried`` (kept by the caller) skips mails started before and gains those started."""
        started: list[asyncio.Task[bool]] = []
        options = self.options
        for _ in range(_MAX_QUERIES_PER_ROUND):
            free = options.max_in_flight - len(self._sends)
            if free <= 0 or self._stopping_now:
                break
            busy = {
                key
                for key, count in self._per_org.items()
                if count >= options.max_in_flight_per_org
            }
            async with self.sessionmaker() as session:  # a read: no write transaction
                due = await repository.due_mails(
                    session,
                    utcnow(),
                    limit=free * _ROWS_PER_SLOT,
                    skip_ids=set(self._sends) | (tried or set()),
                    skip_orgs=busy,
                )
            before = len(started)
            for mail_id, org_id in due:
                if len(self._sends) >= options.max_in_flight:
                    break
                if self._per_org[org_id] >= options.max_in_flight_per_org:
                    continue
                started.append(self._start(mail_id, org_id))
                if tried is not None:
                    tried.add(mail_id)
            if len(due) < free * _ROWS_PER_SLOT or len(started) == before:
                break  # all due mails seen, or nothing more can start now
        return started

    def _start(self, mail_id: int, org_id: int | None) -> asyncio.Task[bool]:
        send = _Send(mail_id, org_id, SendProgress())
        self._sends[mail_id] = send
        self._per_org[org_id] += 1
        send.task = asyncio.create_task(self._process(send), name=f"wiremesh-mail-{mail_id}")
        return send.task

    async def _process(self, send: _Send) -> bool:
        try:
            return await self._deliver(send.mail_id, send.progress)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "mail %s: processing failed; its claim expires and it is tried again",
                send.mail_id,
            )
            return False
        finally:
            del self._sends[send.mail_id]
            self._per_org[send.org_key] -= 1
            if self._per_org[send.org_key] <= 0:
                del self._per_org[send.org_key]
            self._wake.set()

    # --- one mail ---------------------------------------------------------------------------

    async def _deliver(self, mail_id: int, progress: SendProgress) -> bool:
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
            attempts, kind, org_id, queued_at = row.attempts, row.kind, row.org_id, row.created_at
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
                    # A mail about paused settings goes through the global ones.
                    via = None if kind == MailKind.SMTP_PAUSED.value else org_id
                    config = await service.resolve(session, self.settings, via)
            except service.SmtpNotConfigured as exc:
                report = DeliveryReport(Outcome.SMTP_NOT_CONFIGURED, exc.message)
            except (SecretKeyMismatch, SecretKeyInvalid) as exc:
                report = DeliveryReport(Outcome.SECRET_KEY_MISMATCH, exc.message)
            await session.commit()

        if config is not None and mail is not None:
            try:
                report = await self.transport.send(config, mail, progress)
            except asyncio.CancelledError:
                if not progress.data_sent:
                    # Nothing can have been delivered: back to the queue, the attempt uncounted.
                    await self._shielded(self._release(mail_id))
                raise
            except Exception as exc:
                logger.exception("mail %s: the transport failed unexpectedly", mail_id)
                report = DeliveryReport(Outcome.ERROR, f"unexpected error: {type(exc).__name__}")
        assert report is not None
        status = await self._shielded(
            self._record(mail_id, kind, org_id, attempts, queued_at, config, report)
        )
        self._log(mail_id, kind, org_id, attempts, config, report, status)
        return report.delivered and status is not None

    async def _shielded(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run database work to its end even when this send is cancelled meanwhile: a reply
        that arrived is recorded; ``stop()`` waits for it."""
        task = asyncio.ensure_future(work)
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)
        return await asyncio.shield(task)

    async def _release(self, mail_id: int) -> None:
        async with self.sessionmaker() as session:
            await repository.release_claim(session, mail_id, self.claimant, utcnow())
            await session.commit()

    async def _record(
        self,
        mail_id: int,
        kind: str,
        org_id: int | None,
        attempts: int,
        queued_at: datetime,
        config: ResolvedSMTP | None,
        report: DeliveryReport,
    ) -> MailStatus | None:
        async with self.sessionmaker() as session:
            if report.outcome is Outcome.AUTH_FAILED and report.permanent and config is not None:
                if config.org_id is not None and kind != MailKind.SMTP_PAUSED.value:
                    status = await pausing.pause_on_auth_failure(
                        session, mail_id, self.claimant, config, report
                    )
                    await session.commit()
                    return status
                # The global settings: nobody to tell but the log, so back off and retry.
                report = replace(report, permanent=False)
            status = await outbox.record_report(
                session,
                mail_id,
                self.claimant,
                report,
                attempts=attempts,
                policy=self.options.retry,
                queued_at=queued_at,
            )
            await session.commit()
            return status

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
