"""The outbox worker against real SMTP servers: queue, let the worker send, check the inbox.

Org A has its own server (STARTTLS + AUTH); the global server speaks implicit TLS; org B and
an org whose own configuration is inactive go through the global one.

These tests drive the worker by hand (``run_once``) and so do not start the app, whose own
background worker would race them; the HTTP side of the same flows is in test_mail_api.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.mail.helpers import PASSWORD, make_world, outbox_rows, smtp_body
from tests.server.mail.smtp_servers import Certificate, SmtpServer, start_server
from tests.support.ports import free_port
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail import outbox, service
from wiremesh.server.mail.models import MailOutbox
from wiremesh.server.mail.outbox import RetryPolicy
from wiremesh.server.mail.outcomes import DeliveryReport
from wiremesh.server.mail.render import RenderedMail
from wiremesh.server.mail.schemas import SMTPSettingsIn
from wiremesh.server.mail.service import SMTPSettingsInput
from wiremesh.server.mail.transport import FakeTransport, OutgoingMail, ResolvedSMTP, SendProgress
from wiremesh.server.tenancy import SERVER_SCOPE, OrgScope
from wiremesh.server.workers.mail_outbox import MailOutboxWorker, OutboxOptions

FAST = OutboxOptions(poll_interval=0.05, send_timeout=5, retry=RetryPolicy(base_delay=0.0))


async def queue(
    sessionmaker: async_sessionmaker[AsyncSession],
    org_id: int | None,
    to: str = "someone@example.org",
    subject: str = "Hello",
    kind: str = "test",
) -> int:
    async with sessionmaker() as session:
        row = await outbox.enqueue(
            session,
            org_id=org_id,
            kind=kind,
            to=to,
            rendered=RenderedMail(subject=subject, text="body text", html="<p>body</p>"),
        )
        await session.commit()
        return row.id


async def configure(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    org_id: int | None,
    server: SmtpServer | None,
    certificate: Certificate,
    **changes: Any,
) -> None:
    """Store SMTP settings the way the API does (``smtp_body`` has the API's field names)."""
    body = smtp_body(server, certificate, **changes)
    async with sessionmaker() as session:
        scope = SERVER_SCOPE if org_id is None else OrgScope(org_id)
        await service.put_settings(
            session, settings, scope, SMTPSettingsIn.model_validate(body).to_input()
        )
        await session.commit()


async def get_row(sessionmaker: async_sessionmaker[AsyncSession], mail_id: int) -> MailOutbox:
    [row] = await outbox_rows(sessionmaker, id=mail_id)
    return row


async def test_each_org_goes_through_its_own_or_the_global_server(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    world = await make_world(session)
    own = smtp_servers(mode="starttls")
    shared = smtp_servers(mode="implicit")
    await configure(sessionmaker, settings, None, shared, certificate)
    await configure(sessionmaker, settings, world.a.id, own, certificate)

    for_a = await queue(sessionmaker, world.a.id, subject="for a")
    for_b = await queue(sessionmaker, world.b.id, subject="for b")
    worker = MailOutboxWorker(sessionmaker, settings, options=FAST)
    assert await worker.run_once() == 2
    assert [m["Subject"] for m in own.inbox.messages] == ["for a"]
    assert [m["Subject"] for m in shared.inbox.messages] == ["for b"]
    assert own.inbox.messages[0]["From"] == "noreply@example.com"
    assert own.inbox.logins == shared.inbox.logins == ["mailer"]
    for mail_id in (for_a, for_b):
        row = await get_row(sessionmaker, mail_id)
        assert (row.status, row.attempts, row.last_outcome) == ("sent", 1, "delivered")
        assert row.sent_at is not None
        assert row.claimed_until is None

    # Org A switches its own configuration off (keeping its password): its next mail goes
    # through the global server, with no restart.
    await configure(
        sessionmaker, settings, world.a.id, own, certificate, is_active=False, smtp_password=None
    )
    await queue(sessionmaker, world.a.id, subject="a via global")
    assert await worker.run_once() == 1
    assert [m["Subject"] for m in shared.inbox.messages] == ["for b", "a via global"]
    assert len(own.inbox.messages) == 1


async def test_wrong_password_is_reported_retried_and_not_lost(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    world = await make_world(session)
    server = smtp_servers(mode="starttls")
    wrong = "not-the-password"
    await configure(sessionmaker, settings, world.a.id, server, certificate, smtp_password=wrong)
    mail_id = await queue(sessionmaker, world.a.id)
    worker = MailOutboxWorker(sessionmaker, settings, options=FAST)

    assert await worker.run_once() == 0
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts, row.last_outcome) == ("queued", 1, "auth_failed")
    assert row.last_error is not None
    assert "535" in row.last_error
    assert server.inbox.messages == []

    # The admin fixes the password; the retry uses it without any restart.
    await configure(sessionmaker, settings, world.a.id, server, certificate)
    assert await worker.run_once() == 1
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(server.inbox.messages) == 1
    assert await worker.run_once() == 0

    for secret in (wrong, PASSWORD):
        assert all(secret not in record.getMessage() for record in caplog.records)
    ours = [r for r in caplog.records if r.name.startswith("wiremesh")]
    assert any("auth_failed" in r.getMessage() for r in ours)
    assert all("body text" not in r.getMessage() for r in ours)


async def test_server_down_then_up_delivers_exactly_once(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    certificate: Certificate,
) -> None:
    world = await make_world(session)
    port = free_port()
    await configure(
        sessionmaker, settings, None, None, certificate, smtp_server="127.0.0.1", smtp_port=port
    )
    mail_id = await queue(sessionmaker, world.b.id)
    worker = MailOutboxWorker(sessionmaker, settings, options=FAST)

    assert await worker.run_once() == 0
    assert await worker.run_once() == 0
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts, row.last_outcome) == ("queued", 2, "connection_refused")

    server = start_server(certificate, mode="starttls", port=port)
    try:
        assert await worker.run_once() == 1
        assert await worker.run_once() == 0
        await asyncio.sleep(0.05)
        assert await worker.run_once() == 0
        assert len(server.inbox.messages) == 1
    finally:
        server.stop()
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts) == ("sent", 3)


async def test_two_replicas_never_send_the_same_mail(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    world = await make_world(session)
    server = smtp_servers(mode="starttls")
    await configure(sessionmaker, settings, None, server, certificate)
    ids = [await queue(sessionmaker, world.b.id, subject=f"mail {n}") for n in range(8)]
    first = MailOutboxWorker(sessionmaker, settings, options=FAST)
    second = MailOutboxWorker(sessionmaker, settings, options=FAST)
    second.claimant = "another-replica"
    counts = await asyncio.gather(first.run_once(), second.run_once())
    assert sum(counts) == 8
    subjects = sorted(str(m["Subject"]) for m in server.inbox.messages)
    assert subjects == sorted(f"mail {n}" for n in range(8))
    rows = [await get_row(sessionmaker, mail_id) for mail_id in ids]
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}


async def test_a_claim_left_by_a_dead_replica_is_taken_over_after_its_lease(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    await make_world(session)
    server = smtp_servers(mode="starttls")
    await configure(sessionmaker, settings, None, server, certificate)
    mail_id = await queue(sessionmaker, None)
    lease_end = (await get_row(sessionmaker, mail_id)).created_at + timedelta(hours=1)
    async with sessionmaker() as db:
        await db.execute(
            update(MailOutbox)
            .where(MailOutbox.id == mail_id)
            .values(
                status="sending", claimed_by="dead-replica", claimed_until=lease_end, attempts=1
            )
        )
        await db.commit()
    worker = MailOutboxWorker(sessionmaker, settings, options=FAST)
    assert await worker.run_once() == 0  # the lease still holds
    async with sessionmaker() as db:
        await db.execute(
            update(MailOutbox)
            .where(MailOutbox.id == mail_id)
            .values(claimed_until=lease_end - timedelta(days=1))
        )
        await db.commit()
    assert await worker.run_once() == 1
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts, row.claimed_by) == ("sent", 2, settings.replica_id)
    assert len(server.inbox.messages) == 1


async def test_a_refused_recipient_fails_permanently(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    world = await make_world(session)
    server = smtp_servers(mode="starttls", reject_recipients=True)
    await configure(sessionmaker, settings, world.a.id, server, certificate)
    mail_id = await queue(sessionmaker, world.a.id, to="nobody@example.org")
    worker = MailOutboxWorker(sessionmaker, settings, options=FAST)
    assert await worker.run_once() == 0
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts, row.last_outcome) == ("failed", 1, "rejected")
    assert row.last_error is not None
    assert "550" in row.last_error
    assert await worker.run_once() == 0  # never tried again
    assert (await get_row(sessionmaker, mail_id)).attempts == 1


async def test_too_many_attempts_fail_the_mail(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await make_world(session)
    mail_id = await queue(sessionmaker, None)  # no SMTP configured at all
    options = OutboxOptions(retry=RetryPolicy(max_attempts=3, base_delay=0.0))
    worker = MailOutboxWorker(sessionmaker, settings, options=options)
    for _ in range(5):
        await worker.run_once()
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts, row.last_outcome) == ("failed", 3, "smtp_not_configured")


async def test_backoff_grows_exponentially_with_jitter() -> None:
    """The exponential ceiling, scaled by a random factor in [0.5, 1]: at the extremes of the
    random source the delay is half the ceiling and the whole ceiling."""
    lowest = RetryPolicy(base_delay=30, max_delay=600, jitter=lambda: 0.0)
    highest = RetryPolicy(base_delay=30, max_delay=600, jitter=lambda: 1.0)
    ceilings = [30, 60, 120, 240, 480, 600]
    assert [highest.delay(n).total_seconds() for n in range(1, 7)] == ceilings
    assert [lowest.delay(n).total_seconds() for n in range(1, 7)] == [c / 2 for c in ceilings]
    delays = {RetryPolicy(base_delay=30).delay(3).total_seconds() for _ in range(50)}
    assert len(delays) > 1
    assert all(60 <= delay <= 120 for delay in delays)


async def test_a_long_outage_fails_a_mail_only_past_the_give_up_horizon(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """Hours of temporary failures keep the mail queued; past the horizon it fails."""
    await make_world(session)
    mail_id = await queue(sessionmaker, None)  # no SMTP configured: a temporary failure
    policy = RetryPolicy(base_delay=0.0, give_up_after=timedelta(hours=72))
    worker = MailOutboxWorker(sessionmaker, settings, options=OutboxOptions(retry=policy))

    async def queued_ago(hours: float) -> None:
        async with sessionmaker() as db:
            await db.execute(
                update(MailOutbox)
                .where(MailOutbox.id == mail_id)
                .values(created_at=utcnow() - timedelta(hours=hours))
            )
            await db.commit()

    await queued_ago(10)
    for _ in range(12):
        await worker.run_once()
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts) == ("queued", 12)
    await queued_ago(73)
    await worker.run_once()
    row = await get_row(sessionmaker, mail_id)
    assert (row.status, row.attempts, row.last_outcome) == ("failed", 13, "smtp_not_configured")


async def test_a_failed_attempt_waits_for_its_backoff(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await make_world(session)
    mail_id = await queue(sessionmaker, None)
    worker = MailOutboxWorker(
        sessionmaker, settings, options=OutboxOptions(retry=RetryPolicy(base_delay=600))
    )
    await worker.run_once()
    row = await get_row(sessionmaker, mail_id)
    assert row.status == "queued"
    # 600 s scaled by the jitter factor in [0.5, 1].
    assert timedelta(seconds=290) < row.next_attempt_at - row.created_at < timedelta(seconds=700)
    assert await worker.run_once() == 0
    assert (await get_row(sessionmaker, mail_id)).attempts == 1


async def test_the_worker_loop_sends_and_stops(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    world = await make_world(session)
    server = smtp_servers(mode="implicit")
    await configure(sessionmaker, settings, None, server, certificate)
    worker = MailOutboxWorker(sessionmaker, settings, options=FAST)
    await worker.start()
    try:
        mail_id = await queue(sessionmaker, world.a.id)
        for _ in range(200):
            if (await get_row(sessionmaker, mail_id)).status == "sent":
                break
            await asyncio.sleep(0.05)
        assert (await get_row(sessionmaker, mail_id)).status == "sent"
        assert len(server.inbox.messages) == 1
    finally:
        await worker.stop()
    assert not worker.running


async def test_unexpected_errors_are_logged_with_context_and_the_worker_goes_on(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = await make_world(session)
    async with sessionmaker() as db:
        await service.put_settings(
            db,
            settings,
            SERVER_SCOPE,
            SMTPSettingsInput(smtp_server="smtp.example.com", smtp_port=587, from_email="a@b.co"),
        )
        await db.commit()

    class Exploding(FakeTransport):
        async def send(
            self, config: ResolvedSMTP, mail: OutgoingMail, progress: SendProgress | None = None
        ) -> DeliveryReport:
            if mail.subject == "boom":
                raise RuntimeError("transport bug")
            return await super().send(config, mail, progress)

    transport = Exploding()
    boom = await queue(sessionmaker, world.a.id, subject="boom")
    fine = await queue(sessionmaker, world.a.id, subject="fine")
    worker = MailOutboxWorker(sessionmaker, settings, transport=transport, options=FAST)
    with caplog.at_level(logging.WARNING, logger="wiremesh"):
        assert await worker.run_once() == 1
    assert [sent.mail.subject for sent in transport.sent] == ["fine"]
    failed = await get_row(sessionmaker, boom)
    assert (failed.status, failed.last_outcome) == ("queued", "error")
    assert (await get_row(sessionmaker, fine)).status == "sent"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors
    assert f"mail {boom}" in errors[0].getMessage()
    assert errors[0].exc_info is not None


async def test_stored_rows_keep_the_outbox_columns(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await make_world(session)
    mail_id = await queue(sessionmaker, None, to="x@example.org")
    async with sessionmaker() as db:
        row = (
            await db.execute(
                text(
                    'SELECT org_id, "to", subject, text, html, status, attempts, next_attempt_at, '
                    "last_error, created_at, sent_at FROM mail_outbox WHERE id = :id"
                ),
                {"id": mail_id},
            )
        ).one()
    assert row.org_id is None
    assert row.to == "x@example.org"
    assert row.status == "queued"
    assert row.attempts == 0
    assert row.sent_at is None
    assert row.html == "<p>body</p>"
