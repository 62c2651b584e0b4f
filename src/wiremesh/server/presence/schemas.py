"""Response bodies of the monitoring API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class ConnectionOut(BaseModel):
    """One row of ``connection_status``, with who and which device it was."""

    id: int
    connection_id: uuid.UUID
    org_id: int
    user_id: int
    user_email: str
    peer_id: str
    hostname: str | None = Field(description="None when the device has been deleted since")
    device_id: int | None
    virtual_ip: str
    public_ip: str | None
    public_port: int | None
    status: str
    connected_at: datetime
    disconnected_at: datetime | None
    last_ping_at: datetime | None
    last_pong_at: datetime | None
    last_seen_at: datetime | None
    end_reason: str | None
    close_code: int | None
    duration_seconds: float | None = Field(description="Session length; None while connected")


class HistorySummary(BaseModel):
    sessions: int
    timeouts: int
    disconnects: int
    flaps: int = Field(description="Reconnections within the flap window after a session ended")
    connected_seconds: float = Field(
        description=(
            "Time connected within the period; the period starts at the device's enrollment "
            "when that is later than since"
        )
    )
    availability: float = Field(
        description=(
            "Share of the period the device was connected, 0 to 1; the period starts at the "
            "device's enrollment (its created_at) when that is later than since"
        )
    )


class DeviceHistory(BaseModel):
    device_id: int
    peer_id: str
    hostname: str
    since: datetime
    until: datetime
    flap_window_seconds: float
    summary: HistorySummary
    sessions: list[ConnectionOut]


class StaleAddress(BaseModel):
    device_id: int
    org_id: int
    org_name: str
    user_email: str
    peer_id: str
    hostname: str
    virtual_ip: str
    last_seen_at: datetime | None


class CleanupReport(BaseModel):
    deleted: int
    cutoff: datetime


class ServerStats(BaseModel):
    """This replica's live figures."""

    server_id: str
    sessions: int
    orgs_online: int
    heartbeat_flushes: int
    pending_heartbeats: int
    loop_lag_p50_ms: float
    loop_lag_p99_ms: float
    rss_bytes: int | None
