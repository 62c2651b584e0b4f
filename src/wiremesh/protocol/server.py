"""Server side of one agent connection, as a pure state machine.

The I/O layer feeds it frames and the current time and acts on what it returns or raises;
it never touches a socket or a clock itself, so every rule is testable with plain floats.
One instance exists per connected agent (tens of thousands at once), hence ``__slots__``.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Final

from .codec import (
    MAX_MESSAGE_BYTES,
    MAX_PATHS_MESSAGE_BYTES,
    AgentMessage,
    decode_agent_message,
    frame_size,
)
from .errors import CloseCode, ProtocolError
from .messages import (
    PATHS_VERSION,
    SUPPORTED_VERSIONS,
    AuthMessage,
    Heartbeat,
    PathsMessage,
    PingMessage,
    PongMessage,
)

__all__ = [
    "DEFAULT_AUTH_TIMEOUT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_PATHS_RATE_BURST",
    "DEFAULT_PATHS_RATE_PER_SECOND",
    "DEFAULT_RATE_BURST",
    "DEFAULT_RATE_PER_SECOND",
    "ServerSession",
    "SessionState",
    "TokenBucket",
]

DEFAULT_HEARTBEAT_INTERVAL: Final = 15.0
DEFAULT_HEARTBEAT_TIMEOUT: Final = 60.0
"""Four intervals: two lost pings in a row are survived when the RTT is under 10 s, even
with pings up to 10 % late (three intervals of 16.5 s)."""
DEFAULT_AUTH_TIMEOUT: Final = 10.0
DEFAULT_RATE_BURST: Final = 20
DEFAULT_RATE_PER_SECOND: Final = 10.0
DEFAULT_PATHS_RATE_BURST: Final = 16
"""``paths`` frames at once: a full report of about 8,000 peers (the agent keeps 4 spare)."""
DEFAULT_PATHS_RATE_PER_SECOND: Final = 1.0
"""Sustained ``paths`` frames: each is one database transaction on the server."""


class SessionState(Enum):
    """Where a server-side connection is in its life."""

    AWAITING_AUTH = "awaiting_auth"
    """Connected; the first frame must be ``auth``."""
    AUTHENTICATING = "authenticating"
    """``auth`` received; the server is checking the credential. Nothing else may arrive."""
    ESTABLISHED = "established"
    """Credential accepted; pings flow and the agent may send ``pong``/``endpoint``."""
    CLOSED = "closed"
    """Terminal; ``close_code`` says why."""


class TokenBucket:
    """Message rate limiter: ``burst`` messages at once, then ``rate`` per second."""

    __slots__ = ("_tokens", "_updated_at", "burst", "rate")

    def __init__(self, burst: int, rate: float, now: float) -> None:
        if burst < 1 or not rate > 0:
            raise ValueError("burst must be >= 1 and rate > 0")
        self.burst: Final = burst
        self.rate: Final = rate
        self._tokens = float(burst)
        self._updated_at = now

    def take(self, now: float) -> bool:
        """Spend one token if available; ``False`` means the message is over the limit."""
        # max(): a clock that steps backwards must not drain (or mint) tokens.
        elapsed = max(0.0, now - self._updated_at)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._updated_at = max(now, self._updated_at)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class ServerSession:
    """Protocol rules for one agent connection, seen from the server.

    Typical use by the I/O layer::

        session = ServerSession(now)
        try:
            msg = session.receive(frame, now)   # first one is an AuthMessage
            ...check msg.credential...; session.authenticated(now); send welcome
            # afterwards: send encode(session.next_ping(now)) every interval,
            # and call session.check_deadline(now) from a timer.
        except ProtocolError as exc:
            await websocket.close(exc.code, exc.reason)
    """

    __slots__ = (
        "_awaiting_seq",
        "_deadline",
        "_paths_rate",
        "_rate",
        "auth_timeout",
        "close_code",
        "connected_at",
        "established_at",
        "heartbeat_interval",
        "heartbeat_timeout",
        "last_ping_at",
        "last_pong_at",
        "max_message_bytes",
        "ping_seq",
        "state",
        "version",
    )

    def __init__(
        self,
        now: float,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        auth_timeout: float = DEFAULT_AUTH_TIMEOUT,
        rate_burst: int = DEFAULT_RATE_BURST,
        rate_per_second: float = DEFAULT_RATE_PER_SECOND,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        paths_rate_burst: int = DEFAULT_PATHS_RATE_BURST,
        paths_rate_per_second: float = DEFAULT_PATHS_RATE_PER_SECOND,
    ) -> None:
        # Same rules as the Heartbeat message, checked here so a bad config fails at once.
        Heartbeat(interval=heartbeat_interval, timeout=heartbeat_timeout)
        if not auth_timeout > 0:
            raise ValueError("auth_timeout must be > 0")
        self.heartbeat_interval: Final = heartbeat_interval
        self.heartbeat_timeout: Final = heartbeat_timeout
        self.auth_timeout: Final = auth_timeout
        self.max_message_bytes: Final = max_message_bytes
        self._rate = TokenBucket(rate_burst, rate_per_second, now)
        self._paths_rate = TokenBucket(paths_rate_burst, paths_rate_per_second, now)
        self.version: int | None = None
        """The protocol version the agent's ``auth`` named, once received."""
        self.state = SessionState.AWAITING_AUTH
        self.close_code: CloseCode | None = None
        self.connected_at: Final = now
        self.established_at: float | None = None
        self.last_ping_at: float | None = None
        self.last_pong_at: float | None = None
        self.ping_seq = 0
        """Sequence number of the last ping sent (0: none yet)."""
        self._awaiting_seq = -1  # seq of the unanswered ping, -1 when none is outstanding
        self._deadline = now + auth_timeout

    @property
    def heartbeat(self) -> Heartbeat:
        """The heartbeat block to put in this session's welcome."""
        return Heartbeat(interval=self.heartbeat_interval, timeout=self.heartbeat_timeout)

    @property
    def deadline(self) -> float:
        """When the session expires.

        Auth deadline (connect + auth_timeout) until established, then last matching pong
        (or the establishment time) + heartbeat_timeout; ``inf`` once closed.
        """
        return math.inf if self.state is SessionState.CLOSED else self._deadline

    @property
    def next_ping_at(self) -> float:
        """When the next ping is due; ``inf`` unless established."""
        if self.state is not SessionState.ESTABLISHED:
            return math.inf
        last = self.last_ping_at if self.last_ping_at is not None else self.established_at
        assert last is not None  # set on establishment
        return last + self.heartbeat_interval

    @property
    def frame_limit(self) -> int:
        """Largest frame accepted now: ``paths`` reports need more room, but only an
        authenticated version 3 agent gets it (a stranger's frames stay small)."""
        if self.state is SessionState.ESTABLISHED and (self.version or 0) >= PATHS_VERSION:
            return max(self.max_message_bytes, MAX_PATHS_MESSAGE_BYTES)
        return self.max_message_bytes

    def is_expired(self, now: float) -> bool:
        """Whether the auth or heartbeat deadline has passed."""
        return now >= self.deadline

    def check_deadline(self, now: float) -> None:
        """Close and raise AUTH_TIMEOUT / HEARTBEAT_TIMEOUT if the deadline has passed."""
        if not self.is_expired(now):
            return
        if self.state is SessionState.ESTABLISHED:
            raise self._fail(CloseCode.HEARTBEAT_TIMEOUT, f"no pong since {self._deadline}")
        raise self._fail(CloseCode.AUTH_TIMEOUT, f"no auth by {self._deadline}")

    def receive(self, frame: str | bytes, now: float) -> AgentMessage:
        """Validate one frame from the agent against size, rate and state rules.

        Pongs are handled here (a pong for the outstanding ping extends the deadline; one
        with any other seq is late or bogus and is ignored) but still returned, so callers
        can simply skip them. Raises :class:`ProtocolError` and closes on any violation.
        """
        if self.state is SessionState.CLOSED:
            raise self._closed_error()
        # A frame arriving after the deadline must not revive a session the timer has
        # not reaped yet: expiry depends only on the clock, not on timer jitter.
        self.check_deadline(now)
        limit = self.frame_limit
        if frame_size(frame) > limit:
            raise self._fail(CloseCode.MESSAGE_TOO_BIG, f"limit {limit}")
        # Before decoding, so a flood costs as little as possible to refuse.
        if not self._rate.take(now):
            raise self._fail(CloseCode.RATE_LIMITED)
        try:
            message = decode_agent_message(frame, limit)
        except ProtocolError as exc:
            self._close(exc.code)
            raise

        if self.state is SessionState.ESTABLISHED:
            if isinstance(message, PongMessage):
                self._on_pong(message.seq, now)
            elif isinstance(message, PathsMessage):
                if (self.version or 0) < PATHS_VERSION:
                    # Unknown in the version this session speaks, as any newer type is.
                    raise self._fail(CloseCode.UNKNOWN_TYPE, f"paths in version {self.version}")
                if not self._paths_rate.take(now):
                    raise self._fail(CloseCode.RATE_LIMITED, "paths reports too often")
            elif isinstance(message, AuthMessage):
                raise self._fail(CloseCode.NOT_AUTHENTICATED, "auth sent twice")
            return message
        if self.state is SessionState.AUTHENTICATING:
            raise self._fail(CloseCode.NOT_AUTHENTICATED, "message while auth is checked")
        # AWAITING_AUTH
        if not isinstance(message, AuthMessage):
            raise self._fail(CloseCode.NOT_AUTHENTICATED, f"{message.type} before auth")
        if message.version not in SUPPORTED_VERSIONS:
            raise self._fail(CloseCode.UNSUPPORTED_VERSION, f"version {message.version}")
        self.state = SessionState.AUTHENTICATING
        self.version = message.version
        return message

    def authenticated(self, now: float) -> None:
        """The server accepted the credential: start heartbeats (send the welcome next)."""
        if self.state is SessionState.CLOSED:
            # e.g. the auth deadline fired while the credential was being looked up
            raise self._closed_error()
        if self.state is not SessionState.AUTHENTICATING:
            raise RuntimeError(f"authenticated() called in state {self.state.name}")
        self.state = SessionState.ESTABLISHED
        self.established_at = now
        self._deadline = now + self.heartbeat_timeout

    def next_ping(self, now: float) -> PingMessage:
        """Build the next ping; only a pong with this seq will extend the deadline."""
        if self.state is SessionState.CLOSED:
            raise self._closed_error()
        if self.state is not SessionState.ESTABLISHED:
            raise RuntimeError(f"next_ping() called in state {self.state.name}")
        self.ping_seq += 1
        self._awaiting_seq = self.ping_seq
        self.last_ping_at = now
        return PingMessage(seq=self.ping_seq)

    def close(self, code: CloseCode = CloseCode.NORMAL) -> None:
        """Move to CLOSED (idempotent: the first code is kept), e.g. AUTH_FAILED, SUPERSEDED."""
        self._close(code)

    def _on_pong(self, seq: int, now: float) -> None:
        if seq != self._awaiting_seq:
            return  # late (a newer ping is out), duplicate, or never sent: not fatal
        self._awaiting_seq = -1
        self.last_pong_at = now
        self._deadline = now + self.heartbeat_timeout

    def _close(self, code: CloseCode) -> None:
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSED
            self.close_code = code

    def _fail(self, code: CloseCode, detail: str = "") -> ProtocolError:
        self._close(code)
        return ProtocolError(code, detail=detail)

    def _closed_error(self) -> ProtocolError:
        code = self.close_code if self.close_code is not None else CloseCode.NORMAL
        return ProtocolError(code, detail="session already closed")
