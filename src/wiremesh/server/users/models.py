"""The ``user`` table (named so because the seed's queries join ``"user"``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, false, func, true
from sqlalchemy.orm import Mapped, mapped_column

from wiremesh.server.db.base import Base, utcnow


class User(Base):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    is_server_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    password_hash: Mapped[str | None] = mapped_column(String(255))
    """argon2id; None for a user who signs in only by API token or e-mailed link."""
