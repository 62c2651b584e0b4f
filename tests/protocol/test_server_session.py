from __future__ import annotations

import math

import pytest

from wiremesh.protocol import (
    MAX_MESSAGE_BYTES,
    AuthMessage,
    CloseCode,
    EndpointMessage,
    Heartbeat,
    PingMessage,
    PongMessage,
    ProtocolError,
    ServerSession,
    SessionState,
    TokenBucket,
)

from .helpers import auth_frame, established_session, frame


def pong(seq: int) -> str:
    return frame(type="pong", seq=seq)


def expect_close(session: ServerSession, text: str | bytes, now: float, code: CloseCode) -> None:
    with pytest.raises(ProtocolError) as info:
        session.receive(text, now)
    assert info.value.code is code
    assert session.state is SessionState.CLOSED
    assert session.close_code is code


# --- authentication ---------------------------------------------------------------------


def test_auth_then_accept_establishes_the_session() -> None:
    session = ServerSession(100.0)
    states = [session.state]
    message = session.receive(auth_frame(), 101.0)
    states.append(session.state)
    session.authenticated(102.0)
    states.append(session.state)
    assert states == [
        SessionState.AWAITING_AUTH,
        SessionState.AUTHENTICATING,
        SessionState.ESTABLISHED,
    ]
    assert isinstance(message, AuthMessage)
    assert message.credential == "wmk_secret"
    assert session.established_at == 102.0


@pytest.mark.parametrize(
    "text", [pong(0), frame(type="endpoint", listen_port=51820)], ids=["pong", "endpoint"]
)
def test_anything_before_auth_is_not_authenticated(text: str) -> None:
    expect_close(ServerSession(0.0), text, 1.0, CloseCode.NOT_AUTHENTICATED)


def test_any_frame_while_credential_is_checked_is_not_authenticated() -> None:
    session = ServerSession(0.0)
    session.receive(auth_frame(), 0.0)
    expect_close(session, auth_frame(), 0.5, CloseCode.NOT_AUTHENTICATED)


def test_auth_twice_is_not_authenticated() -> None:
    expect_close(established_session(), auth_frame(), 1.0, CloseCode.NOT_AUTHENTICATED)


@pytest.mark.parametrize("version", [0, 4, 99])
def test_other_protocol_version_is_unsupported(version: int) -> None:
    session = ServerSession(0.0)
    expect_close(session, auth_frame(version=version), 0.0, CloseCode.UNSUPPORTED_VERSION)


def test_rejected_credential_closes_with_the_code_the_server_chose() -> None:
    session = ServerSession(0.0)
    session.receive(auth_frame(), 0.0)
    session.close(CloseCode.AUTH_FAILED)
    assert session.close_code is CloseCode.AUTH_FAILED
    with pytest.raises(ProtocolError) as info:
        session.authenticated(0.1)
    assert info.value.code is CloseCode.AUTH_FAILED


def test_authenticated_out_of_order_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError):
        ServerSession(0.0).authenticated(0.0)
    with pytest.raises(RuntimeError):
        established_session().authenticated(0.0)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", CloseCode.MALFORMED),
        (frame(type="hello"), CloseCode.UNKNOWN_TYPE),
        (" " * (MAX_MESSAGE_BYTES + 1), CloseCode.MESSAGE_TOO_BIG),
        (auth_frame(credential=""), CloseCode.MALFORMED),
    ],
)
def test_decode_failures_close_the_session(text: str, code: CloseCode) -> None:
    expect_close(ServerSession(0.0), text, 0.0, code)
    expect_close(established_session(), text, 0.0, code)


def test_endpoint_after_auth_is_returned() -> None:
    message = established_session().receive(frame(type="endpoint", listen_port=4242), 1.0)
    assert message == EndpointMessage(listen_port=4242)


# --- deadlines ---------------------------------------------------------------------------


def test_auth_deadline() -> None:
    session = ServerSession(100.0, auth_timeout=10.0)
    assert session.deadline == 110.0
    assert not session.is_expired(109.999)
    session.check_deadline(109.999)
    assert session.is_expired(110.0)
    with pytest.raises(ProtocolError) as info:
        session.check_deadline(110.0)
    assert info.value.code is CloseCode.AUTH_TIMEOUT
    assert session.state is SessionState.CLOSED


def test_slow_credential_check_still_hits_the_auth_deadline() -> None:
    session = ServerSession(0.0, auth_timeout=10.0)
    session.receive(auth_frame(), 1.0)
    assert session.deadline == 10.0
    with pytest.raises(ProtocolError) as info:
        session.check_deadline(10.0)
    assert info.value.code is CloseCode.AUTH_TIMEOUT
    with pytest.raises(ProtocolError) as info:
        session.authenticated(10.5)  # the DB answered too late
    assert info.value.code is CloseCode.AUTH_TIMEOUT


def test_auth_arriving_after_the_deadline_is_auth_timeout() -> None:
    expect_close(ServerSession(0.0, auth_timeout=5.0), auth_frame(), 5.0, CloseCode.AUTH_TIMEOUT)


def test_heartbeat_deadline_starts_at_establishment_and_moves_with_matching_pongs() -> None:
    session = ServerSession(0.0, heartbeat_interval=10.0, heartbeat_timeout=30.0)
    session.receive(auth_frame(), 1.0)
    session.authenticated(2.0)
    assert session.deadline == 32.0
    assert session.next_ping_at == 12.0

    ping = session.next_ping(12.0)
    assert ping == PingMessage(seq=1)
    assert session.last_ping_at == 12.0
    assert session.next_ping_at == 22.0
    assert session.deadline == 32.0  # sending a ping proves nothing

    message = session.receive(pong(1), 12.5)
    assert message == PongMessage(seq=1)
    assert session.last_pong_at == 12.5
    assert session.deadline == 42.5


def test_heartbeat_timeout() -> None:
    session = established_session(0.0, heartbeat_interval=10.0, heartbeat_timeout=30.0)
    session.next_ping(10.0)
    session.check_deadline(29.9)
    with pytest.raises(ProtocolError) as info:
        session.check_deadline(30.0)
    assert info.value.code is CloseCode.HEARTBEAT_TIMEOUT
    assert session.deadline == math.inf
    assert not session.is_expired(1e9)


def test_a_late_pong_does_not_revive_an_expired_session() -> None:
    session = established_session(0.0, heartbeat_interval=10.0, heartbeat_timeout=30.0)
    session.next_ping(10.0)
    expect_close(session, pong(1), 30.0, CloseCode.HEARTBEAT_TIMEOUT)


@pytest.mark.parametrize(
    "seq", [0, 1, 3, 2**53 - 1], ids=["never-sent-0", "stale", "future", "huge"]
)
def test_pong_with_other_seq_is_ignored_not_fatal(seq: int) -> None:
    session = established_session(0.0, heartbeat_interval=10.0, heartbeat_timeout=30.0)
    session.next_ping(10.0)
    session.next_ping(20.0)  # seq 2 is now the outstanding one; 1 is stale
    assert session.receive(pong(seq), 21.0) == PongMessage(seq=seq)
    assert session.state is SessionState.ESTABLISHED
    assert session.deadline == 30.0
    assert session.last_pong_at is None


def test_duplicate_pong_does_not_extend_the_deadline_twice() -> None:
    session = established_session(0.0, heartbeat_interval=10.0, heartbeat_timeout=30.0)
    session.next_ping(10.0)
    session.receive(pong(1), 11.0)
    session.receive(pong(1), 20.0)
    assert session.deadline == 41.0


def test_ping_sequence_increments() -> None:
    session = established_session()
    assert [session.next_ping(float(t)).seq for t in range(1, 4)] == [1, 2, 3]
    assert session.ping_seq == 3


def test_next_ping_needs_an_established_session() -> None:
    with pytest.raises(RuntimeError):
        ServerSession(0.0).next_ping(0.0)
    assert ServerSession(0.0).next_ping_at == math.inf
    session = established_session()
    session.close(CloseCode.GOING_AWAY)
    with pytest.raises(ProtocolError) as info:
        session.next_ping(1.0)
    assert info.value.code is CloseCode.GOING_AWAY


# --- rate limiting -----------------------------------------------------------------------


def test_burst_then_refill() -> None:
    session = established_session(0.0, rate_burst=20, rate_per_second=10.0)
    # auth already used one token at t=0
    for _ in range(19):
        session.receive(pong(0), 0.0)
    expect_close(session, pong(0), 0.0, CloseCode.RATE_LIMITED)

    session = established_session(0.0, rate_burst=20, rate_per_second=10.0)
    for _ in range(19):
        session.receive(pong(0), 0.0)
    session.receive(pong(0), 0.1)  # 0.1 s at 10/s refills exactly one token
    expect_close(session, pong(0), 0.1, CloseCode.RATE_LIMITED)


def test_steady_rate_at_the_limit_is_allowed() -> None:
    session = established_session(0.0, rate_burst=2, rate_per_second=10.0)
    for i in range(1, 400):  # 40 s, inside the 60 s heartbeat timeout
        session.receive(pong(0), i * 0.1)
    assert session.state is SessionState.ESTABLISHED


def test_garbage_floods_are_limited_before_decoding() -> None:
    session = ServerSession(0.0, rate_burst=1, rate_per_second=1.0)
    session.receive(auth_frame(), 0.0)
    # the bucket is empty, so even a malformed frame is reported as the flood it is
    expect_close(session, "{garbage", 0.0, CloseCode.RATE_LIMITED)


def test_token_bucket_caps_at_burst() -> None:
    bucket = TokenBucket(burst=3, rate=1.0, now=0.0)
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_ignores_a_clock_stepping_back() -> None:
    bucket = TokenBucket(burst=1, rate=1.0, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)  # going back in time mints nothing
    assert not bucket.take(10.5)  # ...and the refill counts from 10.0, not 5.0
    assert bucket.take(11.0)


@pytest.mark.parametrize(("burst", "rate"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_token_bucket_rejects_nonsense(burst: int, rate: float) -> None:
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(burst, rate, 0.0)


# --- closing and construction ------------------------------------------------------------


def test_close_is_idempotent_and_keeps_the_first_code() -> None:
    session = established_session()
    session.close(CloseCode.SUPERSEDED)
    session.close(CloseCode.NORMAL)
    assert session.close_code is CloseCode.SUPERSEDED
    assert session.deadline == math.inf
    with pytest.raises(ProtocolError) as info:
        session.receive(pong(0), 1.0)
    assert info.value.code is CloseCode.SUPERSEDED


def test_default_close_is_normal() -> None:
    session = ServerSession(0.0)
    session.close()
    assert session.close_code is CloseCode.NORMAL


@pytest.mark.parametrize(
    "kwargs",
    [
        {"heartbeat_interval": 10.0, "heartbeat_timeout": 10.0},
        {"heartbeat_interval": 0.0, "heartbeat_timeout": 10.0},
        {"auth_timeout": 0.0},
    ],
)
def test_nonsense_configuration_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's or ours
        ServerSession(0.0, **kwargs)  # type: ignore[arg-type]


def test_heartbeat_block_matches_the_session() -> None:
    session = ServerSession(0.0, heartbeat_interval=7.0, heartbeat_timeout=22.0)
    assert session.heartbeat == Heartbeat(interval=7.0, timeout=22.0)


def test_sessions_are_slotted() -> None:
    assert not hasattr(ServerSession(0.0), "__dict__")
    assert not hasattr(TokenBucket(1, 1.0, 0.0), "__dict__")
