"""``connection_status``: one row per WebSocket session, the history of every device."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Uuid, func, text
from sqlalchemy.orm import Mapped, mapped_column

from wiremesh.server.db.base import Base, utcnow


class ConnectionState(enum.StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    TIMEOUT = "timeout"


LIVE_ROW_PER_DEVICE_INDEX = "uq_connection_status_live_peer"


class ConnectionStatus(Base):
    """The seed's columns and indexes, plus how and where each session ended.

    A row is written when a session starts and once more when it ends; after that it is
    history and never changes again (cleanup deletes it after the retention period).
    """

    __tablename__ = "connection_status"
    __table_args__ = (
        CheckConstraint("status IN ('connected', 'disconnected', 'timeout')", name="status"),
        # At most one live row per device, across every replica: a new session ends the old
        # row in the transaction that inserts its own (presence/history.py).
        Index(
            LIVE_ROW_PER_DEVICE_INDEX,
            "org_id",
            "peer_id",
            unique=True,
            postgresql_where=text("status = 'connected'"),
            sqlite_where=text("status = 'connected'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    virtual_ip: Mapped[str] = mapped_column(String(45), index=True)
    peer_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    public_ip: Mapped[str | None] = mapped_column(String(45))
    public_port: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(
        String(16), index=True, default=ConnectionState.CONNECTED, server_default="connected"
    )
    connected_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    disconnected_at: Mapped[datetime | None]
    last_ping_at: Mapped[datetime | None]
    last_pong_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None] = mapped_column(index=True)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    close_code: Mapped[int | None] = mapped_column(Integer)
    server_id: Mapped[str | None] = mapped_column(String(128))
    agent_version: Mapped[str | None] = mapped_column(String(64))


class ServerReplica(Base):
    """A running server process and its lease; rows it owns outlive it only until the lease ends.

    Each replica renews ``heartbeat_at`` every third of the lease; a replica whose lease has
    run out is dead, and the others end the ``connection_status`` rows it left ``connected``.
    """

    __tablename__ = "server_replica"

    server_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
