"""Alert tables: each org's opt-in settings, and each device's alert state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, false, func
from sqlalchemy.orm import Mapped, mapped_column

from wiremesh.server.db.base import Base, utcnow


class OrgAlertSettings(Base):
    """Offline alerts for one org: opt-in, with a threshold and a debounce window."""

    __tablename__ = "org_alert_settings"
    __table_args__ = (
        CheckConstraint("offline_threshold_seconds >= 0", name="offline_threshold_seconds"),
        CheckConstraint("debounce_seconds >= 0", name="debounce_seconds"),
    )

    org_id: Mapped[int] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    offline_threshold_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    debounce_seconds: Mapped[int] = mapped_column(Integer, default=3600, server_default="3600")
    # When alerts were last switched on: devices offline since before then are not reported.
    enabled_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


class DeviceAlertState(Base):
    """Per device: whether an offline alert is open (awaiting its recovery mail), and when the
    last one went out (the debounce)."""

    __tablename__ = "device_alert_state"

    org_id: Mapped[int] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    peer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_open: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    offline_since: Mapped[datetime | None]
    last_alert_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
