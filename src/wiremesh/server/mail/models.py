"""``smtp_settings``: one per organization, at most one global (``org_id IS NULL``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
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


class SMTPSettings(Base):
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
