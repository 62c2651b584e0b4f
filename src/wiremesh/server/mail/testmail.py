"""The test mail: sent at once through exactly the configuration the org would use."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.config import Settings
from wiremesh.server.mail import outbox, service
from wiremesh.server.mail.outbox import RetryPolicy
from wiremesh.server.mail.schemas import MailTestOut
from wiremesh.server.mail.transport import MailTransport
from wiremesh.server.tenancy import TenantScope


async def send_test_mail(
    session: AsyncSession,
    settings: Settings,
    transport: MailTransport,
    scope: TenantScope,
    to: str,
) -> MailTestOut:
    """Store the test mail, commit, talk to the SMTP server with no transaction open, then
    record its answer and commit again. It owns its two commits (the API and the CLI call
    it as their whole unit of work) so no lock is held while a slow server answers. A test
    is a diagnosis: it is not retried."""
    prepared = await service.prepare_test_mail(session, settings, scope, to)
    await session.commit()
    report = await transport.send(prepared.config, prepared.mail)
    await outbox.record_report(
        session,
        prepared.mail_id,
        settings.replica_id,
        report,
        attempts=1,
        policy=RetryPolicy(),
        retry=False,
    )
    await session.commit()
    return MailTestOut.of(prepared.mail_id, prepared.config, report)
