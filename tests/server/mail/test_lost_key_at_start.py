"""A server started without the key file its stored SMTP passwords need: it says so at once,
in words that say how to restore the file or start over, and makes no new key."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.mail.helpers import make_world
from tests.server.mail.smtp_servers import Certificate
from tests.server.mail.test_delivery import configure
from tests.server.mail.test_shutdown import server_process
from tests.support.processes import ProcessGroup
from tests.support.waiting import eventually
from wiremesh.server.config import Settings


async def test_the_server_reports_a_missing_key_file_and_makes_none(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    database_url: str | None,
    processes: ProcessGroup,
    certificate: Certificate,
) -> None:
    await make_world(session)
    await configure(sessionmaker, settings, None, None, certificate)  # a password, encrypted
    key_file = settings.data_dir / "secret.key"
    key_file.rename(settings.data_dir / "secret.key.backup")

    server = server_process(processes, settings, database_url)
    await server.start()
    await eventually(
        lambda: "Restore the key file" in server.process.log(), 10, "the missing key reported"
    )
    assert "secret_key_missing" not in server.process.log()  # a log line, not an API error
    assert "--discard-lost-secrets" in server.process.log()
    await server.stop(seconds=30)
    assert not key_file.exists()
