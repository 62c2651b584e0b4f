"""How a session ends: the close code the server sent, its name in logs, and what a final
refusal tells the person at the console.

Kept apart from the session loop so the wording a person reads (``agent up``'s last line,
``agent status``) is in one place, next to the codes it explains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from websockets.exceptions import ConnectionClosed

from wiremesh.protocol import CloseCode, close_reason

__all__ = ["ABNORMAL_CLOSURE", "Ended", "Refused", "close_code_of", "code_name"]

ABNORMAL_CLOSURE: Final = 1006
"""The connection ended without a close frame (RFC 6455); the agent reconnects."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The server closed with a code that retrying cannot fix (see ``should_reconnect``)."""

    code: int
    reason: str

    @property
    def message(self) -> str:
        """What to tell the person at the console, with what to do about it."""
        advice = _REFUSAL_ADVICE.get(self.code)
        text = f"the server refused this device: {self.reason} ({self.code})"
        return f"{text}; {advice}" if advice else text


_REFUSAL_ADVICE: Final[dict[int, str]] = {
    CloseCode.AUTH_FAILED: "the device credential is not accepted; enroll again "
    "with `wiremesh agent enroll --force`",
    CloseCode.DEVICE_REVOKED: "this device was revoked by an administrator; enroll "
    "again with a new setup key (`wiremesh agent enroll --force`)",
    CloseCode.UNSUPPORTED_VERSION: "the server speaks another protocol version; upgrade the agent",
}


@dataclass(frozen=True, slots=True)
class Ended:
    """How one session ended: the close code, why, and how long it was established."""

    code: int
    reason: str
    established_for: float | None
    roamed: bool = False
    """Ended by this agent because the machine's address changed: reconnect at once, to the
    same server, without counting a failure."""


def close_code_of(exc: ConnectionClosed) -> tuple[int, str]:
    """The code and reason the *server* closed with; 1006 when it sent no close frame."""
    if exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason or close_reason(exc.rcvd.code)
    return ABNORMAL_CLOSURE, "connection lost"


def code_name(code: int) -> str:
    """The close code's name for log lines (``DEVICE_REVOKED``), ``UNKNOWN`` if not ours."""
    try:
        return CloseCode(code).name
    except ValueError:
        return "ABNORMAL_CLOSURE" if code == ABNORMAL_CLOSURE else "UNKNOWN"
