"""Mail: request and response bodies. The SMTP password is write-only: never in a response."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from wiremesh.server.mail.models import MailOutbox, MailStatus, SMTPSettings
from wiremesh.server.mail.outcomes import DeliveryReport
from wiremesh.server.mail.service import SMTPSettingsInput, TlsModeChoice, tls_mode_choice
from wiremesh.server.mail.transport import ResolvedSMTP
from wiremesh.server.users.schemas import Email

MailStatusName = Literal["queued", "sending", "sent", "failed"]


class SMTPSettingsIn(BaseModel):
    """One whole configuration (PUT replaces it). Omit ``smtp_password`` to keep the stored one."""

    model_config = ConfigDict(extra="forbid")

    smtp_server: str = Field(max_length=255, examples=["smtp.example.com"])
    smtp_port: int = Field(examples=[587], description="1 to 65535")
    smtp_username: str | None = Field(default=None, max_length=255)
    smtp_password: str | None = Field(
        default=None,
        max_length=512,
        description="Write-only: stored encrypted, never returned; omit to keep the current one",
    )
    clear_password: bool = Field(default=False, description="Remove the stored password")
    from_email: str = Field(max_length=320, examples=["noreply@example.com"])
    from_name: str | None = Field(
        default=None,
        max_length=128,
        examples=["Example Ops"],
        description='Display name in From ("Example Ops <noreply@example.com>"); blank: none',
    )
    use_tls: bool = Field(default=True, description="False sends in plain text (not advised)")
    tls_mode: TlsModeChoice = Field(
        default="auto",
        description="auto: implicit TLS on port 465, STARTTLS on any other port",
    )
    verify_certificate: bool = Field(
        default=True, description="False accepts any certificate (a self-signed internal relay)"
    )
    ca_certificate: str | None = Field(
        default=None, description="PEM of a CA to trust in addition to the system's"
    )
    is_active: bool = True

    def to_input(self) -> SMTPSettingsInput:
        return SMTPSettingsInput(
            smtp_server=self.smtp_server,
            smtp_port=self.smtp_port,
            from_email=self.from_email,
            smtp_username=self.smtp_username,
            smtp_password=self.smtp_password,
            clear_password=self.clear_password,
            use_tls=self.use_tls,
            tls_mode=self.tls_mode,
            verify_certificate=self.verify_certificate,
            ca_certificate=self.ca_certificate,
            is_active=self.is_active,
            from_name=self.from_name,
        )


class SMTPSettingsOut(BaseModel):
    id: int
    scope: Literal["global", "org"]
    org_id: int | None
    smtp_server: str
    smtp_port: int
    smtp_username: str | None
    password_set: bool
    from_email: str
    from_name: str | None
    use_tls: bool
    tls_mode: TlsModeChoice
    effective_tls: Literal["none", "starttls", "implicit"]
    verify_certificate: bool
    ca_certificate: str | None
    is_active: bool
    paused_at: datetime | None = Field(
        description="Set when the relay refused the login: the org's mails wait until the "
        "settings are saved again or resumed"
    )
    paused_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: SMTPSettings) -> SMTPSettingsOut:
        return cls(
            id=row.id,
            scope="global" if row.org_id is None else "org",
            org_id=row.org_id,
            smtp_server=row.smtp_server,
            smtp_port=row.smtp_port,
            smtp_username=row.smtp_username,
            password_set=row.smtp_password is not None,
            from_email=row.from_email,
            from_name=row.from_name,
            use_tls=row.use_tls,
            tls_mode=tls_mode_choice(row),
            effective_tls=row.effective_tls.value,
            verify_certificate=row.verify_certificate,
            ca_certificate=row.ca_certificate,
            is_active=row.is_active,
            paused_at=row.paused_at,
            paused_reason=row.paused_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class MailTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Email


class MailTestOut(BaseModel):
    """What the SMTP server answered, in plain words."""

    delivered: bool
    outcome: str = Field(
        description=(
            "delivered, auth_failed, tls_failed, connection_refused, connection_failed, "
            "timeout, rejected, deferred, smtp_destination_forbidden or error; an org's own "
            "server never answers connection_refused or timeout (both are connection_failed)"
        )
    )
    message: str
    smtp_code: int | None
    scope: Literal["global", "org"] = Field(description="Which configuration was used")
    smtp_server: str
    smtp_port: int
    tls: Literal["none", "starttls", "implicit"]
    mail_id: int

    @classmethod
    def of(cls, mail_id: int, config: ResolvedSMTP, report: DeliveryReport) -> MailTestOut:
        return cls(
            delivered=report.delivered,
            outcome=report.outcome.value,
            message=report.message,
            smtp_code=report.smtp_code,
            scope="global" if config.org_id is None else "org",
            smtp_server=config.host,
            smtp_port=config.port,
            tls=config.tls.value,
            mail_id=mail_id,
        )


class MailOut(BaseModel):
    """A mail of the outbox, without its body."""

    id: int
    org_id: int | None
    kind: str
    to: str
    subject: str
    status: MailStatus
    attempts: int
    next_attempt_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, row: MailOutbox) -> MailOut:
        return cls(
            id=row.id,
            org_id=row.org_id,
            kind=row.kind,
            to=row.to,
            subject=row.subject,
            status=MailStatus(row.status),
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at if row.status == MailStatus.QUEUED else None,
            last_outcome=row.last_outcome,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=row.sent_at,
        )


class MailRetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["failed", "queued"] = Field(
        default="failed",
        description="failed: queue them again from their first attempt; queued: send them "
        "now instead of after their backoff",
    )


class MailRetryOut(BaseModel):
    retried: int
