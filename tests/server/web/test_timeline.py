"""The history chart: bars where the device was connected, clipped to the period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from wiremesh.server.presence.schemas import ConnectionOut
from wiremesh.server.web.devices.timeline import WIDTH, timeline_svg

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=10)


def session(start_h: float, end_h: float | None, status: str, ip: str = "") -> ConnectionOut:
    return ConnectionOut(
        id=1,
        connection_id=uuid.uuid4(),
        org_id=1,
        user_id=1,
        user_email="a@example.com",
        peer_id="p",
        hostname="h",
        device_id=1,
        virtual_ip="100.64.0.1",
        public_ip=ip or None,
        public_port=None,
        status=status,
        connected_at=SINCE + timedelta(hours=start_h),
        disconnected_at=None if end_h is None else SINCE + timedelta(hours=end_h),
        last_ping_at=None,
        last_pong_at=None,
        last_seen_at=None,
        end_reason=None,
        close_code=None,
        duration_seconds=None,
    )


def test_bars_are_placed_on_the_time_axis_and_clipped() -> None:
    svg = timeline_svg(
        [
            session(-5, 1, "disconnected"),  # began before the period: starts at its left edge
            session(2, 3, "timeout", "<b>203.0.113.9</b>"),
            session(8, None, "connected"),
        ],
        SINCE,
        UNTIL,
    )
    assert '<rect class="tl-session" x="0.0" y="10" width="100.0"' in svg
    assert '<rect class="tl-session" x="200.0" y="10" width="100.0"' in svg
    assert '<rect class="tl-timeout" x="297.0"' in svg
    assert f'<rect class="tl-live" x="800.0" y="10" width="{WIDTH - 800.0}"' in svg
    assert "&lt;b&gt;203.0.113.9&lt;/b&gt;" in svg  # values are escaped
    assert "<b>" not in svg
    assert "style=" not in svg  # the CSP forbids inline styles


def test_an_empty_period_is_all_offline() -> None:
    svg = timeline_svg([], SINCE, UNTIL)
    assert svg.count("<rect") == 1
    assert 'class="tl-offline"' in svg
