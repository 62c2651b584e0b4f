"""The alert rules alone: a snapshot in, a decision out, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from wiremesh.server.alerts.rules import AlertPolicy, OfflineDevice, overdue, reason_text

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = AlertPolicy(
    offline_threshold=timedelta(minutes=5), debounce=timedelta(hours=1), enabled_at=T0
)
DEVICE = OfflineDevice(
    org_id=1,
    peer_id="p1",
    hostname="laptop",
    virtual_ip="100.64.0.2",
    reason="timeout",
    offline_since=T0 + timedelta(minutes=10),
    seen_at=T0 + timedelta(minutes=9),
    last_alert_at=None,
)


def test_a_device_is_overdue_once_past_the_threshold() -> None:
    assert not overdue(POLICY, DEVICE, DEVICE.offline_since + timedelta(minutes=4), None)
    assert overdue(POLICY, DEVICE, DEVICE.offline_since + timedelta(minutes=5), None)


def test_the_clock_starts_no_earlier_than_not_before() -> None:
    started = DEVICE.offline_since + timedelta(minutes=30)
    assert not overdue(POLICY, DEVICE, started + timedelta(minutes=1), started)
    assert overdue(POLICY, DEVICE, started + timedelta(minutes=5), started)


def test_offline_before_alerts_were_on_or_seen_since_is_not_reported() -> None:
    later = DEVICE.offline_since + timedelta(hours=1)
    assert not overdue(replace(POLICY, enabled_at=later), DEVICE, later + timedelta(hours=1), None)
    back = replace(DEVICE, seen_at=DEVICE.offline_since + timedelta(seconds=1))
    assert not overdue(POLICY, back, later, None)


def test_the_debounce_window_holds_the_next_alert() -> None:
    now = DEVICE.offline_since + timedelta(hours=2)
    recent = replace(DEVICE, last_alert_at=now - timedelta(minutes=59))
    assert not overdue(POLICY, recent, now, None)
    assert overdue(POLICY, replace(recent, last_alert_at=now - timedelta(hours=1)), now, None)


def test_no_threshold_alerts_at_the_transition() -> None:
    assert replace(POLICY, offline_threshold=timedelta(0)).alerts_at_once
    assert not POLICY.alerts_at_once
    assert POLICY.window_start(T0) == T0 - timedelta(hours=1)


def test_reasons_in_words() -> None:
    assert reason_text("timeout") == "stopped answering heartbeats (timed out)"
    assert reason_text("disconnected") == "disconnected"
    assert reason_text("heartbeat_timeout") == "stopped answering heartbeats (timed out)"
    assert reason_text("something_else") == "disconnected (something else)"
