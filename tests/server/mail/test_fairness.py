"""The outbox worker's loop against real SMTP sockets: one org's hanging relay holds only its
own slots, so another org's mail through a healthy STARTTLS+AUTH server arrives at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.mail.helpers import make_world
from tests.server.mail.smtp_servers import Certificate, SilentServer, SmtpServer
from tests.server.mail.test_delivery import configure, get_row, queue
from tests.support.waiting import eventually
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail import repository
from wiremesh.server.workers.mail_outbox import MailOutboxWorker, OutboxOptions

# Long timeouts, as a slow relay may need: fairness must not depend on giving up quickly.
PATIENT = OutboxOptions(
    poll_interval=0.2,
    max_in_flight=4,
    max_in_flight_per_org=2,
    send_timeout=60,
    connect_timeout=30,
    greeting_timeout=60,
)


async def test_a_hanging_relay_does_not_hold_up_another_orgs_mail(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
    silent_server: SilentServer,
) -> None:
    """Org A's relay accepts TCP and never speaks; ten of A's mails are queued before B's.
    Sent in batches, B's mail waited for A's time-outs (a minute and more); now it goes out
    while A's sends still hang, and stopping the worker gives A's mails back untried."""
    world = await make_world(session)
    healthy = smtp_servers(mode="starttls")
    await configure(sessionmaker, settings, None, healthy, certificate)
    await configure(sessionmaker, settings, world.a.id, healthy, certificate)
    await configure(
        sessionmaker, settings, world.a.id, None, certificate,
        smtp_server="127.0.0.1", smtp_port=silent_server.port, tls_mode="starttls",
    )  # fmt: skip
    for_a = [await queue(sessionmaker, world.a.id, subject=f"a-{n}") for n in range(10)]
    for_b = await queue(sessionmaker, world.b.id, subject="for b")

    worker = MailOutboxWorker(sessionmaker, settings, options=PATIENT)
    started = time.monotonic()
    await worker.start()
    try:

        async def b_arrived() -> bool:
            return [m["Subject"] for m in healthy.inbox.messages] == ["for b"]

        await eventually(b_arrived, 30, "org B's mail arrives")
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"org B's mail took {elapsed:.1f} s"

        async def b_recorded() -> bool:
            return (await get_row(sessionmaker, for_b)).status == "sent"

        await eventually(b_recorded, 10, "org B's mail recorded as sent")
        # A holds its two slots, no more, poll after poll.
        await eventually(lambda: len(silent_server._writers) == 2, 10, "A's two connections")
        await asyncio.sleep(1.0)
        assert worker.in_flight == 2
        assert len(silent_server._writers) == 2
    finally:
        stop_started = time.monotonic()
        await worker.stop()
    assert time.monotonic() - stop_started < 10
    for mail_id in for_a:
        row = await get_row(sessionmaker, mail_id)
        assert (row.status, row.attempts, row.claimed_until) == ("queued", 0, None)


async def test_a_start_takes_back_its_own_claims_but_not_test_mails(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """Claims of this server id are taken back at once; another replica's wait for their
    lease; a test mail of this id may be in a request or a CLI command right now."""
    world = await make_world(session)
    own = await queue(sessionmaker, world.a.id, kind="device_offline")
    own_test = await queue(sessionmaker, world.a.id)
    other = await queue(sessionmaker, world.a.id, kind="device_offline")
    async with sessionmaker() as db:
        for mail_id, claimant in [
            (own, settings.replica_id),
            (own_test, settings.replica_id),
            (other, "another-replica"),
        ]:
            assert await repository.claim_mail(
                db, mail_id, now=utcnow(), until=utcnow() + timedelta(hours=1), claimed_by=claimant
            )
        await db.commit()

    worker = MailOutboxWorker(sessionmaker, settings, options=PATIENT)
    await worker.start()
    await worker.stop()
    rows = {mail_id: await get_row(sessionmaker, mail_id) for mail_id in (own, own_test, other)}
    assert rows[own].status in ("queued", "failed")  # taken back (then tried: no SMTP here)
    assert rows[own].last_outcome in (None, "smtp_not_configured")
    assert (rows[own_test].status, rows[own_test].claimed_by) == ("sending", settings.replica_id)
    assert (rows[other].status, rows[other].claimed_by) == ("sending", "another-replica")
