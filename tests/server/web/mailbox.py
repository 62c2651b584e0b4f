"""Reading links out of the mails a real SMTP server received."""

from __future__ import annotations

import re
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncSession

from tests.server.mail.smtp_servers import Certificate, SmtpServer
from tests.support.waiting import eventually
from wiremesh.server.config import Settings
from wiremesh.server.mail import service as mail_service
from wiremesh.server.mail.service import SMTPSettingsInput
from wiremesh.server.tenancy import TenantScope

SMTP_PASSWORD = "s3cret-pw"  # what tests.server.mail.smtp_servers' servers accept
_URL = re.compile(r"https?://\S+")


async def use_smtp_server(
    session: AsyncSession,
    settings: Settings,
    scope: TenantScope,
    server: SmtpServer,
    certificate: Certificate,
) -> None:
    """Point the scope's SMTP settings at ``server``, trusting its certificate."""
    await mail_service.put_settings(
        session,
        settings,
        scope,
        SMTPSettingsInput(
            smtp_server=server.host,
            smtp_port=server.port,
            from_email="noreply@example.com",
            smtp_username="mailer",
            smtp_password=SMTP_PASSWORD,
            ca_certificate=certificate.pem,
        ),
    )


async def mail_to(server: SmtpServer, address: str, *, seconds: float = 30.0) -> EmailMessage:
    """The newest mail ``server`` accepted for ``address``, once it arrived."""

    def received() -> EmailMessage | None:
        for message, recipients in zip(
            reversed(server.inbox.messages), reversed(server.inbox.recipients), strict=True
        ):
            if address in recipients:
                found: EmailMessage = message
                return found
        return None

    return await eventually(received, seconds, f"a mail to {address}")


def link_in(message: EmailMessage, path: str) -> str:
    """The link to ``path`` in the mail's plain text, as a path with its query."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text: str = body.get_content()
    for url in _URL.findall(text):
        if path in url:
            found: str = url[url.index(path) :]
            return found
    raise AssertionError(f"no link to {path} in:\n{text}")
