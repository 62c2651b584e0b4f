"""What the agent tells the server of its paths, and when (pure, with a fake clock)."""

from __future__ import annotations

import json
from typing import Any

from wiremesh.agent.pathreport import BURST, HANDSHAKE_REFRESH, PathReporter
from wiremesh.agent.paths import PeerPath


def path(index: int, kind: str = "direct", handshake: float | None = 1000.0) -> PeerPath:
    return PeerPath(f"peer-{index}", kind, "198.51.100.7:51820", handshake)  # type: ignore[arg-type]


def decoded(frames: list[str]) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in frames]


def started(version: int = 3) -> PathReporter:
    reporter = PathReporter()
    reporter.start(version, 0.0)
    return reporter


def test_full_first_then_only_changes_at_most_once_a_second() -> None:
    reporter = started()
    paths = [path(1), path(2)]
    (full,) = decoded(reporter.frames(paths, 0.0))
    assert full["full"] is True
    assert [row["peer_id"] for row in full["paths"]] == ["peer-1", "peer-2"]
    assert reporter.frames(paths, 0.5) == []
    changed = [path(1), path(2, "relay")]
    assert reporter.frames(changed, 0.9) == []  # too soon
    (delta,) = decoded(reporter.frames(changed, 1.0))
    assert delta["full"] is False
    assert [(row["peer_id"], row["path"]) for row in delta["paths"]] == [("peer-2", "relay")]
    assert reporter.frames(changed, 5.0) == []


def test_handshakes_alone_are_reported_once_a_minute() -> None:
    reporter = started()
    reporter.frames([path(1), path(2)], 0.0)
    moved = [path(1, handshake=1100.0), path(2)]
    assert reporter.frames(moved, 30.0) == []
    (refresh,) = decoded(reporter.frames(moved, HANDSHAKE_REFRESH))
    assert refresh["full"] is False
    assert refresh["paths"] == [
        {
            "peer_id": "peer-1",
            "path": "direct",
            "endpoint": "198.51.100.7:51820",
            "last_handshake": 1100.0,
        }
    ]


def test_a_peer_that_left_makes_the_next_report_full() -> None:
    reporter = started()
    reporter.frames([path(1), path(2)], 0.0)
    (report,) = decoded(reporter.frames([path(1)], 2.0))
    assert report["full"] is True
    assert [row["peer_id"] for row in report["paths"]] == ["peer-1"]


def test_nothing_is_reported_to_an_older_server() -> None:
    reporter = started(version=2)
    assert reporter.frames([path(1)], 0.0) == []
    assert reporter.frames([path(1, "relay")], 10.0) == []


def test_a_large_report_stays_under_the_servers_paths_rate() -> None:
    """More frames than the bucket allows: the rest goes in later reports, a frame a second."""
    reporter = started()
    paths = [path(i) for i in range(1024 * (BURST + 2))]
    first = decoded(reporter.frames(paths, 0.0))
    assert len(first) == BURST
    assert first[0]["full"] is True
    assert not any(frame["full"] for frame in first[1:])
    told = {row["peer_id"] for frame in first for row in frame["paths"]}
    now = 0.0
    while len(told) < len(paths):
        now += 1.0
        frames = decoded(reporter.frames(paths, now))
        assert len(frames) <= 1
        assert not any(frame["full"] for frame in frames)
        told |= {row["peer_id"] for frame in frames for row in frame["paths"]}
        assert now < 60
    assert reporter.frames(paths, now + 1.0) == []


def test_an_endpoint_the_protocol_cannot_carry_is_left_out() -> None:
    reporter = started()
    odd = PeerPath("peer-1", "local", "wg.example:51820", 5.0)
    (report,) = decoded(reporter.frames([odd], 0.0))
    assert report["paths"] == [
        {"peer_id": "peer-1", "path": "local", "endpoint": None, "last_handshake": 5.0}
    ]


def test_a_new_welcome_starts_with_a_full_report_again() -> None:
    reporter = started()
    reporter.frames([path(1)], 0.0)
    reporter.start(3, 10.0)
    (report,) = decoded(reporter.frames([path(1)], 10.0))
    assert report["full"] is True
