"""A device's sessions as a timeline: an SVG drawn on the server, no script needed.

Each session is a bar from its start to its end (clipped to the period); what lies between
bars is time offline. A session that ended by heartbeat timeout ends with a red mark, one
still open reaches the right edge. Styles come from the dashboard's stylesheet (classes),
so the chart follows the light or dark scheme and needs no inline style.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape

from wiremesh.server.presence.models import ConnectionState
from wiremesh.server.presence.schemas import ConnectionOut

PERIODS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
WIDTH = 1000
BAR_TOP = 10
BAR_HEIGHT = 36
HEIGHT = 70


def _x(moment: datetime, since: datetime, until: datetime) -> float:
    span = max((until - since).total_seconds(), 1e-9)
    share = (moment - since).total_seconds() / span
    return round(min(max(share, 0.0), 1.0) * WIDTH, 2)


def _label(moment: datetime, span: timedelta) -> str:
    return moment.strftime("%H:%M" if span <= timedelta(days=1) else "%m-%d %H:%M")


def timeline_svg(sessions: Sequence[ConnectionOut], since: datetime, until: datetime) -> str:
    """The chart's markup; every value in it is escaped or a number."""
    span = until - since
    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="Sessions from {escape(_label(since, span))} to '
        f'{escape(_label(until, span))} UTC" preserveAspectRatio="none">',
        f'<rect class="tl-offline" x="0" y="{BAR_TOP}" width="{WIDTH}" height="{BAR_HEIGHT}"/>',
    ]
    for item in sessions:
        start = _x(item.connected_at, since, until)
        end = _x(item.disconnected_at or until, since, until)
        width = max(end - start, 1.0)
        kind = "tl-live" if item.disconnected_at is None else "tl-session"
        ended = item.end_reason or item.status
        finish = (
            f"{item.disconnected_at:%Y-%m-%d %H:%M:%S} ({ended})" if item.disconnected_at else "now"
        )
        source = f" from {item.public_ip}" if item.public_ip else ""
        title = f"{item.connected_at:%Y-%m-%d %H:%M:%S} to {finish}{source}"
        parts.append(
            f'<rect class="{kind}" x="{start}" y="{BAR_TOP}" width="{width}" '
            f'height="{BAR_HEIGHT}"><title>{escape(title)}</title></rect>'
        )
        if item.status == ConnectionState.TIMEOUT.value:
            parts.append(
                f'<rect class="tl-timeout" x="{max(end - 3, 0)}" y="{BAR_TOP - 4}" width="3" '
                f'height="{BAR_HEIGHT + 8}"><title>heartbeat timeout</title></rect>'
            )
    for share in (0.0, 0.5, 1.0):
        moment = since + span * share
        anchor = {0.0: "start", 0.5: "middle", 1.0: "end"}[share]
        parts.append(
            f'<text class="tl-axis" x="{share * WIDTH}" y="{HEIGHT - 4}" '
            f'text-anchor="{anchor}">{escape(_label(moment, span))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
