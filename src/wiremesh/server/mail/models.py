"""Mail tables: ``smtp_settings`` (the seed's, plus TLS options) and the outbox.

``smtp_settings`` holds one row per organization and at most one global row (``org_id IS NULL``).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from wiremesh.server.db.base import Base, utcnow

# A plain UNIQUE(org_id) lets any number of NULLs through on PostgreSQL and SQLite alike.
# This partial unique index on a constant expression admits exactly one global row.
GLOBAL_SMTP_UNIQUE_INDEX = "uq_smtp_settings_single_global"

IMPLICIT_TLS_PORT = 465


class TlsMode(enum.StrEnum):
    """How a connection is secured: what ``use_tls`` and ``tls_mode`` resolve to."""

    NONE = "none"
    STARTTLS = "starttls"
    IMPLICIT = "implicit"


class SMTPSettings(Base):
    """The seed's columns, plus ``tls_mode``, ``verify_certificate`` and ``ca_certificate``.

    ``use_tls`` keeps its meaning: false sends in plain text; true secures the connection with
    ``tls_mode`` when it is set, else implicit TLS on port 465 and STARTTLS on any other port.
    ``smtp_password`` holds a Fernet token (see ``wiremesh.server.crypto``), never the password.
    """

    __tablename__ = "smtp_settings"
    __table_args__ = (
        UniqueConstraint("org_id"),
        Index(
            GLOBAL_SMTP_UNIQUE_INDEX,
            text("(org_id IS NULL)"),
            unique=True,
            postgresql_where=text("org_id IS NULL"),
            sqlite_where=text("org_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int | None] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    smtp_server: Mapped[str] = mapped_column(String(255))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_username: Mapped[str | None] = mapped_column(String(255))
    smtp_password: Mapped[str | None] = mapped_column(String(1024))
    from_email: Mapped[str] = mapped_column(String(320))
    use_tls: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    # NULL = chosen by port (465 implicit, else STARTTLS); 'starttls' or 'implicit' to force one.
    tls_mode: Mapped[str | None] = mapped_column(String(16))
    verify_certificate: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    ca_certificate: Mapped[str | None] = mapped_column(Text)
    # Shown beside from_email ("Example Ops <noreply@example.com>").
    from_name: Mapped[str | None] = mapped_column(String(128))
    # Set when the relay refused the credentials (5xx to AUTH): the org's mails wait, so a
    # wrong password does not lock the account out; cleared by saving the settings or resuming.
    paused_at: Mapped[datetime | None]
    paused_reason: Mapped[str | None] = mapped_column(String(1024))

    @property
    def effective_tls(self) -> TlsMode:
        return effective_tls(self.use_tls, self.tls_mode, self.smtp_port)


def effective_tls(use_tls: bool, tls_mode: str | None, port: int) -> TlsMode:
    """The one rule for how a connection is secured."""
    if not use_tls:
        return TlsMode.NONE
    if tls_mode is not None:
        return TlsMode(tls_mode)
    return TlsMode.IMPLICIT if port == IMPLICIT_TLS_PORT else TlsMode.STARTTLS


class MailStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class MailKind(enum.StrEnum):
    TEST = "test"
    INVITATION = "invitation"
    DEVICE_OFFLINE = "device_offline"
    DEVICE_ONLINE = "device_online"
    SMTP_PAUSED = "smtp_paused"
    SIGN_IN = "sign_in"


class MailOutbox(Base):
    """Every mail is stored here first; the outbox worker sends it, once, with retries.

    A sender claims a row by moving it to ``sending`` with a lease (``claimed_until``); a row
    whose lease ran out (its replica died mid-send) may be claimed again.
    """

    __tablename__ = "mail_outbox"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed')", name="status"),
        Index("ix_mail_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_mail_outbox_org_id_created_at", "org_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    to: Mapped[str] = mapped_column("to", String(320))
    subject: Mapped[str] = mapped_column(String(512))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        String(16), default=MailStatus.QUEUED.value, server_default=MailStatus.QUEUED.value
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    last_outcome: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    sent_at: Mapped[datetime | None]
