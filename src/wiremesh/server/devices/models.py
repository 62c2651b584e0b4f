"""Devices (one ``virtual_ip_mapping`` row each) and setup keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from wiremesh.server.db.base import Base, utcnow

PUBLIC_KEY_UNIQUE_INDEX = "uq_virtual_ip_mapping_org_id_public_key"
"""One WireGuard public key per organization (devices without a key are not counted)."""


class VirtualIPMapping(Base):
    """One enrolled device: who owns it, its virtual IP, its WireGuard key and credential."""

    __tablename__ = "virtual_ip_mapping"
    __table_args__ = (
        UniqueConstraint("org_id", "virtual_ip"),
        UniqueConstraint("org_id", "peer_id"),
        Index("ix_virtual_ip_mapping_user_id_org_id", "user_id", "org_id"),
        # Two peers with one key cannot both be reached: WireGuard knows a peer by its key.
        Index(
            PUBLIC_KEY_UNIQUE_INDEX,
            "org_id",
            "public_key",
            unique=True,
            sqlite_where=text("public_key IS NOT NULL"),
            postgresql_where=text("public_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    peer_id: Mapped[str] = mapped_column(String(64))
    virtual_ip: Mapped[str] = mapped_column(String(45))
    public_key: Mapped[str | None] = mapped_column(String(44))
    hostname: Mapped[str] = mapped_column(String(253))
    credential_lookup: Mapped[str] = mapped_column(String(16), unique=True)
    credential_hash: Mapped[str] = mapped_column(String(64))
    setup_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("setup_key.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    revoked_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]


class SetupKey(Base):
    """A key that enrolls devices into one org on behalf of one user; only its hash is kept."""

    __tablename__ = "setup_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    lookup: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    reusable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    usage_limit: Mapped[int | None] = mapped_column(Integer)
    used_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
