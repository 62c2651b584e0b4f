"""Close codes, their fixed reasons, and the single exception the protocol raises.

Every protocol violation maps to exactly one WebSocket close code, so the I/O layers can
handle all failures with one ``except ProtocolError as exc: close(exc.code, exc.reason)``.
"""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "CLOSE_REASONS",
    "MAX_CLOSE_REASON_BYTES",
    "NO_RECONNECT_CODES",
    "CloseCode",
    "ProtocolError",
    "close_reason",
    "should_reconnect",
]

MAX_CLOSE_REASON_BYTES: Final = 123
"""A close frame payload is at most 125 bytes, two of which carry the code (RFC 6455 5.5)."""


class CloseCode(IntEnum):
    """WebSocket close codes used between agent and server (4000-4999 are ours)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    MALFORMED = 4000
    UNKNOWN_TYPE = 4001
    NOT_AUTHENTICATED = 4002
    AUTH_FAILED = 4003
    DEVICE_REVOKED = 4004
    SUPERSEDED = 4005
    HEARTBEAT_TIMEOUT = 4006
    RATE_LIMITED = 4007
    UNSUPPORTED_VERSION = 4008
    AUTH_TIMEOUT = 4009


CLOSE_REASONS: Final = MappingProxyType(
    {
        CloseCode.NORMAL: "normal closure",
        CloseCode.GOING_AWAY: "server shutting down",
        CloseCode.MESSAGE_TOO_BIG: "message too big",
        CloseCode.INTERNAL_ERROR: "internal error",
        CloseCode.SERVICE_RESTART: "server restarting, reconnect later",
        CloseCode.MALFORMED: "malformed message: invalid JSON or fields",
        CloseCode.UNKNOWN_TYPE: "unknown message type",
        CloseCode.NOT_AUTHENTICATED: "auth must be the first message and is accepted only once",
        CloseCode.AUTH_FAILED: "authentication failed",
        CloseCode.DEVICE_REVOKED: "device revoked",
        CloseCode.SUPERSEDED: "superseded by a newer session of this device",
        CloseCode.HEARTBEAT_TIMEOUT: "heartbeat timeout",
        CloseCode.RATE_LIMITED: "too many messages",
        CloseCode.UNSUPPORTED_VERSION: "unsupported protocol version",
        CloseCode.AUTH_TIMEOUT: "no auth message in time",
    }
)
"""The fixed human-readable reason sent in the close frame for each code."""

NO_RECONNECT_CODES: Final = frozenset(
    {CloseCode.AUTH_FAILED, CloseCode.DEVICE_REVOKED, CloseCode.UNSUPPORTED_VERSION}
)
"""Closes that retrying cannot fix: the agent needs a new credential or a new version."""


def close_reason(code: int) -> str:
    """Return the fixed reason for ``code``; unknown codes get a generic reason."""
    try:
        return CLOSE_REASONS[CloseCode(code)]
    except ValueError:
        return "connection closed"


def should_reconnect(code: int) -> bool:
    """Whether an agent closed with ``code`` should reconnect (with backoff).

    Unknown codes reconnect: giving up forever on a code we do not understand would turn
    a future server's harmless close into a dead agent.
    """
    return code not in NO_RECONNECT_CODES


def _fit_close_reason(reason: str) -> str:
    """Truncate ``reason`` to the close-frame budget without splitting a UTF-8 sequence."""
    data = reason.encode("utf-8", "replace")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


class ProtocolError(Exception):
    """A peer broke the protocol; the connection must be closed with ``code``.

    ``reason`` is what goes into the close frame (the fixed reason unless overridden, and
    always cut to fit). ``detail`` is for logs only: it may quote peer-supplied input, so
    it is never sent back.
    """

    def __init__(self, code: CloseCode, reason: str | None = None, *, detail: str = "") -> None:
        self.code: CloseCode = code
        self.reason: str = _fit_close_reason(close_reason(code) if reason is None else reason)
        self.detail: str = detail
        super().__init__(code, self.reason)

    def __str__(self) -> str:
        text = f"{self.code.name} ({int(self.code)}): {self.reason}"
        return f"{text}: {self.detail}" if self.detail else text
