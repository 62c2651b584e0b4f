from __future__ import annotations

import math

import pytest

from wiremesh.protocol import (
    AgentSession,
    AgentState,
    CloseCode,
    Heartbeat,
    PeerRemove,
    PeersChanged,
    PeerUpsert,
    PongMessage,
    ProtocolError,
    WelcomeReceived,
    encode,
    encode_peers_delta,
)

from .helpers import frame, make_peer, make_welcome, welcome_frame


def welcomed(now: float = 0.0) -> AgentSession:
    """An agent session that received the default welcome (peers 1 and 2) at ``now``."""
    session = AgentSession(now)
    session.receive(welcome_frame(), now)
    return session


def expect_close(session: AgentSession, text: str, now: float, code: CloseCode) -> None:
    with pytest.raises(ProtocolError) as info:
        session.receive(text, now)
    assert info.value.code is code
    assert session.state is AgentState.CLOSED
    assert session.close_code is code


def test_welcome_establishes_and_fills_the_peer_map() -> None:
    session = AgentSession(0.0)
    assert session.heartbeat is None
    welcome = make_welcome(interval=5.0, timeout=20.0)
    events = session.receive(encode(welcome), 1.0)
    assert events == [WelcomeReceived(welcome)]
    assert session.state is AgentState.ESTABLISHED
    assert session.welcome == welcome
    assert session.heartbeat == Heartbeat(interval=5.0, timeout=20.0)
    assert dict(session.peers) == {"peer-1": make_peer(1), "peer-2": make_peer(2)}
    assert session.deadline == 21.0


def test_peer_map_is_read_only() -> None:
    with pytest.raises(TypeError):
        welcomed().peers["x"] = make_peer(9)  # type: ignore[index]


@pytest.mark.parametrize(
    "text",
    [frame(type="ping", seq=1), encode_peers_delta([PeerRemove(peer_id="peer-1")])],
    ids=["ping", "peers_delta"],
)
def test_anything_before_welcome_is_not_authenticated(text: str) -> None:
    expect_close(AgentSession(0.0), text, 0.0, CloseCode.NOT_AUTHENTICATED)


def test_second_welcome_is_not_authenticated() -> None:
    expect_close(welcomed(), welcome_frame(), 1.0, CloseCode.NOT_AUTHENTICATED)


def test_welcome_of_another_version_is_unsupported() -> None:
    text = encode(make_welcome().model_copy(update={"version": 4}))
    expect_close(AgentSession(0.0), text, 0.0, CloseCode.UNSUPPORTED_VERSION)


@pytest.mark.parametrize(
    ("text", "code"),
    [("nope", CloseCode.MALFORMED), (frame(type="pong", seq=1), CloseCode.UNKNOWN_TYPE)],
)
def test_bad_server_frames_close(text: str, code: CloseCode) -> None:
    expect_close(welcomed(), text, 1.0, code)


def test_oversized_server_frame_closes() -> None:
    session = AgentSession(0.0, max_message_bytes=100)
    expect_close(session, welcome_frame(), 0.0, CloseCode.MESSAGE_TOO_BIG)


def test_ping_is_answered_with_the_same_seq_and_extends_the_deadline() -> None:
    session = welcomed(0.0)
    assert session.receive(frame(type="ping", seq=41), 30.0) == [PongMessage(seq=41)]
    assert session.last_received_at == 30.0
    assert session.deadline == 80.0


def test_upsert_adds_and_replaces() -> None:
    session = welcomed()
    moved = make_peer(1, endpoint="203.0.113.9:4000", online=False)
    events = session.receive(
        encode_peers_delta([PeerUpsert(peer=moved), PeerUpsert(peer=make_peer(3))]), 1.0
    )
    assert events == [PeersChanged(upserted=(moved, make_peer(3)), removed=())]
    assert session.peers["peer-1"] == moved
    assert set(session.peers) == {"peer-1", "peer-2", "peer-3"}


def test_remove_drops_a_peer_and_unknown_remove_is_a_silent_no_op() -> None:
    session = welcomed()
    events = session.receive(
        encode_peers_delta([PeerRemove(peer_id="peer-2"), PeerRemove(peer_id="ghost")]), 1.0
    )
    assert events == [PeersChanged(upserted=(), removed=("peer-2",))]
    assert set(session.peers) == {"peer-1"}
    assert session.receive(encode_peers_delta([PeerRemove(peer_id="ghost")]), 2.0) == []


def test_identical_upsert_reports_nothing() -> None:
    session = welcomed()
    assert session.receive(encode_peers_delta([PeerUpsert(peer=make_peer(1))]), 1.0) == []


def test_changes_within_one_delta_are_netted() -> None:
    session = welcomed()
    changed = make_peer(1, online=False)
    events = session.receive(
        encode_peers_delta(
            [
                PeerUpsert(peer=make_peer(7)),
                PeerRemove(peer_id="peer-7"),  # added and removed: nothing to do
                PeerRemove(peer_id="peer-1"),
                PeerUpsert(peer=changed),  # removed then re-added changed: an upsert
                PeerRemove(peer_id="peer-2"),
            ]
        ),
        1.0,
    )
    assert events == [PeersChanged(upserted=(changed,), removed=("peer-2",))]
    assert dict(session.peers) == {"peer-1": changed}


def test_any_server_frame_counts_as_liveness() -> None:
    session = welcomed(0.0)
    session.receive(encode_peers_delta([PeerRemove(peer_id="ghost")]), 40.0)
    assert session.deadline == 90.0


def test_no_welcome_in_time_is_auth_timeout() -> None:
    session = AgentSession(0.0, welcome_timeout=15.0)
    assert session.deadline == 15.0
    session.check_deadline(14.9)
    expect_close(session, welcome_frame(), 15.0, CloseCode.AUTH_TIMEOUT)


def test_silent_server_is_heartbeat_timeout() -> None:
    session = welcomed(0.0)
    assert not session.is_expired(49.9)
    assert session.is_expired(50.0)
    with pytest.raises(ProtocolError) as info:
        session.check_deadline(50.0)
    assert info.value.code is CloseCode.HEARTBEAT_TIMEOUT
    assert session.deadline == math.inf


def test_closed_session_refuses_frames_with_its_close_code() -> None:
    session = welcomed()
    session.close(CloseCode.GOING_AWAY)
    session.close(CloseCode.NORMAL)
    with pytest.raises(ProtocolError) as info:
        session.receive(frame(type="ping", seq=1), 1.0)
    assert info.value.code is CloseCode.GOING_AWAY


def test_nonsense_welcome_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="welcome_timeout"):
        AgentSession(0.0, welcome_timeout=0.0)


def test_agent_sessions_are_slotted() -> None:
    assert not hasattr(AgentSession(0.0), "__dict__")
