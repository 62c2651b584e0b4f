"""Version 3: the agent's ``paths`` report, its size, its rate, and who may send it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.protocol.helpers import auth_frame, established_session, frame, make_welcome
from wiremesh.protocol import (
    DEFAULT_PATHS_RATE_BURST,
    MAX_MESSAGE_BYTES,
    MAX_PATHS_MESSAGE_BYTES,
    MAX_PATHS_PER_MESSAGE,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    AgentSession,
    CloseCode,
    PathReport,
    PathsMessage,
    ProtocolError,
    ServerSession,
    decode_agent_message,
    encode,
    paths_frames,
)


def row(index: int = 1, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "peer_id": f"peer-{index}",
        "path": "direct",
        "endpoint": "198.51.100.7:51820",
        "last_handshake": 1_760_000_000.5,
    }
    fields.update(overrides)
    return fields


def paths_frame(rows: list[dict[str, Any]], full: Any = True, **extra: Any) -> str:
    return frame(type="paths", full=full, paths=rows, **extra)


def v3_session(now: float = 0.0, **kwargs: Any) -> ServerSession:
    session = ServerSession(now, **kwargs)
    session.receive(auth_frame(version=3), now)
    session.authenticated(now)
    return session


def test_version_3_is_spoken_and_older_ones_still_served() -> None:
    assert PROTOCOL_VERSION == 3
    assert {1, 2, 3} == SUPPORTED_VERSIONS


def test_a_paths_report_decodes_with_normalized_endpoints() -> None:
    message = decode_agent_message(
        paths_frame(
            [
                row(1),
                row(2, path="relay", endpoint="[2001:DB8::1]:03478", last_handshake=None),
                row(3, path="none", endpoint=None, last_handshake=0),
                {"peer_id": "peer-4", "path": "local"},  # endpoint, handshake: null
            ]
        )
    )
    assert isinstance(message, PathsMessage)
    assert message.full is True
    assert [r.path for r in message.paths] == ["direct", "relay", "none", "local"]
    assert message.paths[1].endpoint == "[2001:db8::1]:3478"
    assert message.paths[2].last_handshake == 0.0
    assert message.paths[3] == PathReport(peer_id="peer-4", path="local")


@pytest.mark.parametrize(
    "text",
    [
        paths_frame([row(path="wormhole")]),
        paths_frame([row(endpoint="host.example:1")]),
        paths_frame([row(endpoint="198.51.100.7")]),
        paths_frame([row(last_handshake=-1)]),
        paths_frame([row(last_handshake="1")]),
        paths_frame([row(last_handshake=1e300)]),
        '{"type":"paths","full":true,"paths":[{"peer_id":"p","path":"none","last_handshake":NaN}]}',
        paths_frame([row(peer_id="")]),
        paths_frame([row(peer_id="p" * 65)]),
        paths_frame([row(1), row(1)]),  # one peer twice
        paths_frame([row(extra=1)]),
        paths_frame([row()], full=1),
        paths_frame([row()], note="x"),
        frame(type="paths", paths=[]),  # full is required
    ],
)
def test_bad_paths_reports_are_malformed(text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_agent_message(text, MAX_PATHS_MESSAGE_BYTES)
    assert info.value.code is CloseCode.MALFORMED


def test_a_report_holds_at_most_1024_rows() -> None:
    rows = [{"peer_id": f"p{i}", "path": "none"} for i in range(MAX_PATHS_PER_MESSAGE + 1)]
    with pytest.raises(ProtocolError) as info:
        decode_agent_message(paths_frame(rows), MAX_PATHS_MESSAGE_BYTES)
    assert info.value.code is CloseCode.MALFORMED
    assert decode_agent_message(paths_frame(rows[:-1]), MAX_PATHS_MESSAGE_BYTES)


def test_a_version_3_session_may_send_paths_frames_up_to_64_kib() -> None:
    rows = [row(i) for i in range(300)]
    text = paths_frame(rows)
    assert MAX_MESSAGE_BYTES < len(text) <= MAX_PATHS_MESSAGE_BYTES
    message = v3_session().receive(text, 1.0)
    assert isinstance(message, PathsMessage)
    assert len(message.paths) == 300
    too_big = text + " " * (MAX_PATHS_MESSAGE_BYTES - len(text) + 1)
    session = v3_session()
    with pytest.raises(ProtocolError) as info:
        session.receive(too_big, 1.0)
    assert info.value.code is CloseCode.MESSAGE_TOO_BIG


def test_frames_before_auth_stay_small_whatever_version_is_claimed() -> None:
    session = ServerSession(0.0)
    big = auth_frame(version=3, agent_version="a" * 20, pad=" " * MAX_MESSAGE_BYTES)
    with pytest.raises(ProtocolError) as info:
        session.receive(big, 0.0)
    assert info.value.code is CloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize("version", [1, 2])
def test_paths_from_an_older_session_is_an_unknown_type(version: int) -> None:
    session = ServerSession(0.0)
    session.receive(auth_frame(version=version), 0.0)
    session.authenticated(0.0)
    with pytest.raises(ProtocolError) as info:
        session.receive(paths_frame([row()]), 1.0)
    assert info.value.code is CloseCode.UNKNOWN_TYPE
    # ...and the larger frames of version 3 are not theirs either.
    session = established_session()  # version 1
    with pytest.raises(ProtocolError) as info:
        session.receive(paths_frame([row(i) for i in range(100)]), 1.0)
    assert info.value.code is CloseCode.MESSAGE_TOO_BIG


def test_paths_before_auth_is_not_authenticated() -> None:
    with pytest.raises(ProtocolError) as info:
        ServerSession(0.0).receive(paths_frame([row()]), 0.0)
    assert info.value.code is CloseCode.NOT_AUTHENTICATED


def test_paths_reports_faster_than_one_a_second_sustained_close_with_rate_limited() -> None:
    session = v3_session(rate_burst=1000, rate_per_second=1000.0)
    text = paths_frame([row()], full=False)
    now = 1.0
    for _ in range(DEFAULT_PATHS_RATE_BURST):  # the burst
        session.receive(text, now)
    for _ in range(10):  # then one a second is fine
        now += 1.0
        session.receive(text, now)
    with pytest.raises(ProtocolError) as info:
        session.receive(text, now + 0.1)
    assert info.value.code is CloseCode.RATE_LIMITED


def test_paths_frames_chunk_by_rows_and_bytes_and_only_the_first_is_full() -> None:
    rows = [PathReport(**row(i)) for i in range(2500)]
    frames = paths_frames(rows, full=True)
    assert len(frames) > 2
    decoded = [decode_agent_message(f, MAX_PATHS_MESSAGE_BYTES) for f in frames]
    assert all(len(f.encode()) <= MAX_PATHS_MESSAGE_BYTES for f in frames)
    assert [m.full for m in decoded] == [True] + [False] * (len(frames) - 1)  # type: ignore[union-attr]
    assert [r for m in decoded for r in m.paths] == rows  # type: ignore[union-attr]
    by_rows = paths_frames(rows[:10], full=False, max_rows=4)
    assert [len(json.loads(f)["paths"]) for f in by_rows] == [4, 4, 2]
    assert [json.loads(f)["full"] for f in by_rows] == [False] * 3
    assert paths_frames([], full=False) == []
    (empty,) = paths_frames([], full=True)
    assert decode_agent_message(empty) == PathsMessage(full=True, paths=[])
    assert encode(PathsMessage(full=True, paths=[])) == empty


def test_the_agent_accepts_an_older_servers_welcome_and_knows_its_version() -> None:
    for version in (2, 3):
        session = AgentSession(0.0)
        session.receive(encode(make_welcome().model_copy(update={"version": version})), 0.0)
        assert session.version == version
    assert AgentSession(0.0).version is None
