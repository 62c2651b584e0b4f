"""The test mail: sent at once through exactly the configuration the org would use."""

from __future__ import annotations

import math

from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.config import Settings
from wiremesh.server.errors import ApiError
from wiremesh.server.mail import outbox, service
from wiremesh.server.mail.outbox import RetryPolicy
from wiremesh.server.mail.schemas import MailTestOut
from wiremesh.server.mail.transport import MailTransport
from wiremesh.server.ratelimit import TokenBuckets
from wiremesh.server.state import AppState
from wiremesh.server.tenancy import OrgScope, TenantScope


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


def charge_test_mail(state: AppState, scope: TenantScope) -> None:
    """Take one of the org's test mails, or refuse with 429 ``too_many_test_mails``; the
    server's own tests (server administrators) are not limited. The API and the dashboard
    share this budget."""
    if not isinstance(scope, OrgScope):
        return
    if state.test_mail_budget is None:
        state.test_mail_budget = TokenBuckets(
            state.settings.smtp_test_burst, state.settings.smtp_test_per_minute / 60
        )
    key = str(scope.org_id)
    wait = state.test_mail_budget.retry_after(key)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "too_many_test_mails",
            f"this organization sent too many test mails; retry in {seconds} s",
            retry_after=seconds,
        )
    state.test_mail_budget.take(key)
