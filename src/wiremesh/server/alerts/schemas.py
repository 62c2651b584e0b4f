"""Alerts: request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from wiremesh.server.alerts.rules import DEFAULT_DEBOUNCE_SECONDS
from wiremesh.server.alerts.service import AlertSettingsView


class AlertSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    offline_threshold_seconds: int = Field(
        default=0,
        description="0: alert as soon as a device goes offline; else once it stays offline so long",
    )
    debounce_seconds: int = Field(
        default=DEFAULT_DEBOUNCE_SECONDS,
        description="At most one offline alert per device in this window",
    )


class AlertSettingsOut(BaseModel):
    org_id: int
    enabled: bool
    offline_threshold_seconds: int
    debounce_seconds: int
    enabled_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, view: AlertSettingsView) -> AlertSettingsOut:
        return cls(
            org_id=view.org_id,
            enabled=view.enabled,
            offline_threshold_seconds=view.offline_threshold_seconds,
            debounce_seconds=view.debounce_seconds,
            enabled_at=view.enabled_at,
            updated_at=view.updated_at,
        )
