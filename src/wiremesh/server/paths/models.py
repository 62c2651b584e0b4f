"""Where devices can be reached: relays that are up, and each device's address candidates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from wiremesh.server.db.base import Base, utcnow


class Relay(Base):
    """A relay host. ``online`` changes only together with a ``relay_changed`` event, so
    every replica's list of relays follows the table."""

    __tablename__ = "relay"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    public_key: Mapped[str] = mapped_column(String(44))
    endpoint: Mapped[str] = mapped_column(String(53))
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class RelayCredential(Base):
    """A relay's own credential: only the relay of this name may check in with it, and the
    global relay token may no longer claim the name, so deleting the row shuts out exactly
    one relay. Only a hash of the secret is kept (see ``server.auth.secrets``)."""

    __tablename__ = "relay_credential"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    lookup: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class DeviceCandidates(Base):
    """A device's addresses: its own (``lan``, from its agent) and the mapping its NAT made
    (``observed``, from a relay). Deleted with the device."""

    __tablename__ = "device_candidates"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("virtual_ip_mapping.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[int] = mapped_column(Integer, index=True)
    lan: Mapped[list[Any]] = mapped_column(JSON, default=list)
    observed: Mapped[str | None] = mapped_column(String(53))
    observed_by: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PeerPath(Base):
    """How a device reaches one peer, as its agent last reported (protocol version 3).

    One row per (device, peer); a full report replaces the device's rows. Deleted with the
    device, and with the peer when that is revoked or deleted (``peer_id`` is the peer's).
    """

    __tablename__ = "peer_path"
    __table_args__ = (
        # Revoking or deleting a device forgets it as everyone's peer: by (org, peer_id).
        Index("ix_peer_path_org_id_peer_id", "org_id", "peer_id"),
    )

    device_id: Mapped[int] = mapped_column(
        ForeignKey("virtual_ip_mapping.id", ondelete="CASCADE"), primary_key=True
    )
    peer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(8))
    endpoint: Mapped[str | None] = mapped_column(String(53))
    last_handshake_at: Mapped[datetime | None]
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)
