"""``mesh_event``: every change that peers or other replicas must learn, in commit order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wiremesh.server.db.base import Base, utcnow

EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids on PostgreSQL; on SQLite only an INTEGER primary key can AUTOINCREMENT, which
never reuses an id, even one that pruning freed."""


class MeshEvent(Base):
    """One change, written in the transaction that made it; ids increase in commit order.

    No foreign key to the organization: the event that an organization was deleted must
    outlive it. Rows are pruned after ``event_retention``; a replica further behind than
    that reloads its view instead of replaying.
    """

    __tablename__ = "mesh_event"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's own attribute)

    id: Mapped[int] = mapped_column(EVENT_ID, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
