"""What the agent tells the server about its paths (protocol version 3). Pure.

Fed each tick's :class:`~wiremesh.agent.paths.PeerPath` list and a monotonic clock, it says
which ``paths`` frames to send, remembering what the server was told so that a report
carries only what changed:

- a full report after each welcome from a version 3 server (none to older servers), and
  whenever a peer the server knows of is gone (a delta cannot remove a row);
- otherwise a delta when a peer's path or endpoint changed, or, at most every
  ``HANDSHAKE_REFRESH`` seconds, when handshakes moved (ages are worked out by the reader);
- never more than one report per ``MIN_INTERVAL``, and no more frames than a bucket that
  mirrors the server's ``paths`` limit with some to spare allows. What did not fit goes
  in a later report, since it still differs from what the server was told.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pydantic import ValidationError

from wiremesh.agent.paths import PeerPath
from wiremesh.protocol import (
    DEFAULT_PATHS_RATE_BURST,
    DEFAULT_PATHS_RATE_PER_SECOND,
    PATHS_VERSION,
    PathReport,
    TokenBucket,
    paths_frames,
)

MIN_INTERVAL: Final = 1.0
"""Seconds between two reports at least."""
HANDSHAKE_REFRESH: Final = 300.0
"""Handshakes alone are reported at most this often."""
BURST: Final = DEFAULT_PATHS_RATE_BURST - 4
"""Frames at once: the server's burst less a margin for frames bunched up in transit."""

_Reported = tuple[str, str | None, float | None]


def _report(path: PeerPath) -> PathReport:
    """The protocol's row; a value it cannot carry (an endpoint WireGuard spelled oddly, a
    clock gone mad) is left out rather than the row: the path is still worth telling."""
    for endpoint, handshake in (
        (path.endpoint, path.last_handshake),
        (None, path.last_handshake),
        (None, None),
    ):
        try:
            return PathReport(
                peer_id=path.peer_id, path=path.path, endpoint=endpoint, last_handshake=handshake
            )
        except ValidationError:
            continue
    raise AssertionError("a row without endpoint and handshake is always valid")


class PathReporter:
    """Decides the ``paths`` frames to send; one per agent, restarted at every welcome."""

    __slots__ = ("_bucket", "_enabled", "_full", "_handshakes_at", "_last_at", "_reported")

    def __init__(self) -> None:
        self._enabled = False
        self._full = False
        self._reported: dict[str, _Reported] = {}
        self._bucket: TokenBucket | None = None
        self._last_at = -float("inf")
        self._handshakes_at = -float("inf")

    def start(self, version: int, now: float) -> None:
        """A welcome: report everything if the server speaks version 3, else nothing."""
        self._enabled = version >= PATHS_VERSION
        self._full = True
        self._reported = {}
        self._bucket = TokenBucket(BURST, DEFAULT_PATHS_RATE_PER_SECOND, now)
        self._last_at = -float("inf")
        self._handshakes_at = now

    def frames(self, paths: Sequence[PeerPath], now: float) -> list[str]:
        """The frames to send now (often none); they count as told once returned."""
        if not self._enabled or self._bucket is None or now - self._last_at < MIN_INTERVAL:
            return []
        reported = self._reported
        current = {path.peer_id: path for path in paths}
        full = self._full or any(peer_id not in current for peer_id in reported)
        refresh = now - self._handshakes_at >= HANDSHAKE_REFRESH
        if full:
            rows = list(paths)
        else:
            rows = [path for path in paths if _news(reported.get(path.peer_id), path, refresh)]
            if not rows:
                return []
        frames = paths_frames([_report(path) for path in rows], full=full)
        allowed = 0
        while allowed < len(frames) and self._bucket.take(now):
            allowed += 1
        if not allowed:
            return []
        sent_rows = _rows_in(frames[:allowed], rows)
        if full:
            reported.clear()
            self._full = False
        for path in sent_rows:
            reported[path.peer_id] = (path.path, path.endpoint, path.last_handshake)
        if full or refresh:
            self._handshakes_at = now
        self._last_at = now
        return frames[:allowed]


def _news(told: _Reported | None, path: PeerPath, refresh: bool) -> bool:
    """Whether ``path`` differs from what the server was told (handshakes only on refresh)."""
    if told is None or told[:2] != (path.path, path.endpoint):
        return True
    return refresh and told[2] != path.last_handshake


def _rows_in(frames: list[str], rows: list[PeerPath]) -> list[PeerPath]:
    """The rows the first frames carry: frames hold rows in order, so count them. The key
    cannot occur inside a value: JSON escapes every quote in a string."""
    count = sum(frame.count('"peer_id":') for frame in frames)
    return rows[:count]
