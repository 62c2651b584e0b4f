"""Stopping a real server process while its mails are in DATA at a slow relay.

The relay takes each message at once and answers 250 three seconds later; deliveries are
counted at the relay (a message it took is delivered, whether or not the sender heard back).
SIGTERM: the stop waits for the replies, records both mails as sent, and nothing is sent
again after a restart. SIGKILL: the replies are lost, so the restarted replica (same server
id) sends both again at once, not after the claim lease, with the same Message-ID: the
duplicate window docs/mail.md describes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.mail.helpers import make_world, outbox_rows
from tests.server.mail.smtp_servers import Certificate, SmtpServer
from tests.server.mail.test_delivery import configure, queue
from tests.support.ports import free_port
from tests.support.processes import SERVER_ENV, ProcessGroup, ServerProcess, clean_environ
from tests.support.waiting import eventually
from wiremesh.server.config import Settings

DATA_DELAY = 3.0


def server_process(
    processes: ProcessGroup, settings: Settings, database_url: str | None
) -> ServerProcess:
    env = {
        **clean_environ(),
        **SERVER_ENV,
        "WIREMESH_DATA_DIR": str(Path(settings.data_dir)),
        "WIREMESH_SERVER_ID": "mail-replica-1",
        "WIREMESH_MAIL_POLL_INTERVAL": "0.2",
        "WIREMESH_MAIL_SHUTDOWN_GRACE": "15",
        "WIREMESH_SMTP_ALLOW_PRIVATE_HOSTS": "true",
    }
    if database_url is not None:
        env["WIREMESH_DATABASE_URL"] = database_url
    return ServerProcess(processes, env, free_port())


async def _two_mails_in_data(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    relay: SmtpServer,
    certificate: Certificate,
    server: ServerProcess,
) -> None:
    world = await make_world(session)
    await configure(sessionmaker, settings, None, relay, certificate)
    # Alerts, not test mails: a restart takes back every kind but tests (see docs/mail.md).
    await queue(sessionmaker, world.a.id, subject="first", kind="device_offline")
    await queue(sessionmaker, world.b.id, subject="second", kind="device_offline")
    await server.start()

    async def both_taken() -> bool:
        return len(relay.inbox.messages) == 2

    await eventually(both_taken, 30, "the relay took both messages")


async def test_sigterm_mid_data_records_the_replies_and_sends_nothing_twice(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    database_url: str | None,
    processes: ProcessGroup,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    relay = smtp_servers(mode="starttls", data_delay=DATA_DELAY)
    server = server_process(processes, settings, database_url)
    await _two_mails_in_data(session, sessionmaker, settings, relay, certificate, server)

    stopping = time.monotonic()
    await server.stop(seconds=30)
    # It waited for the replies (the relay's delay), not for a QUIT or a 30 s time-out.
    assert time.monotonic() - stopping < 15
    rows = await outbox_rows(sessionmaker)
    assert [(row.status, row.attempts) for row in rows] == [("sent", 1), ("sent", 1)]

    await server.start()
    await eventually(lambda: server.running(), 5, "the restarted server runs")
    await asyncio.sleep(2)  # several polls of the restarted worker
    assert len(relay.inbox.messages) == 2
    assert [row.status for row in await outbox_rows(sessionmaker)] == ["sent", "sent"]
    await server.stop(seconds=30)


async def test_sigkill_mid_data_resends_at_once_after_a_restart_with_the_same_id(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    database_url: str | None,
    processes: ProcessGroup,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    relay = smtp_servers(mode="starttls", data_delay=DATA_DELAY)
    server = server_process(processes, settings, database_url)
    await _two_mails_in_data(session, sessionmaker, settings, relay, certificate, server)

    server.kill()
    await server.process.exit_code(10)
    rows = await outbox_rows(sessionmaker)
    assert [row.status for row in rows] == ["sending", "sending"]
    assert {row.claimed_by for row in rows} == {"mail-replica-1"}

    restarted = time.monotonic()
    await server.start()

    async def all_sent() -> bool:
        rows = await outbox_rows(sessionmaker)
        return [row.status for row in rows] == ["sent", "sent"]

    await eventually(all_sent, 30, "the restarted replica sent its own claims again")
    # At once, not after the claim lease (600 s by default).
    assert time.monotonic() - restarted < 30
    assert len(relay.inbox.messages) == 4
    ids = Counter(message["Message-ID"] for message in relay.inbox.messages)
    assert sorted(ids.values()) == [2, 2]
    assert [row.attempts for row in await outbox_rows(sessionmaker)] == [2, 2]
    assert "sending them again now" in server.process.log()
    await server.stop(seconds=30)
