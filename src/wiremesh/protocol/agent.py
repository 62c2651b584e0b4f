"""Agent side of the connection, as a pure state machine.

It turns server frames into events (a pong to send, a full peer list, effective peer
changes) and keeps the current peer map, so the agent's I/O layer only reconfigures
WireGuard when something really changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from .codec import MAX_SERVER_MESSAGE_BYTES, decode_server_message
from .errors import CloseCode, ProtocolError
from .messages import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Heartbeat,
    Peer,
    PeersDeltaMessage,
    PeerUpsert,
    PingMessage,
    PongMessage,
    Relay,
    RelaysMessage,
    WelcomeMessage,
)

__all__ = [
    "DEFAULT_WELCOME_TIMEOUT",
    "AgentEvent",
    "AgentSession",
    "AgentState",
    "PeersChanged",
    "RelaysChanged",
    "WelcomeReceived",
]

DEFAULT_WELCOME_TIMEOUT: Final = 15.0
"""Longer than the server's auth timeout, so the server's clearer close code wins."""


class AgentState(Enum):
    """Where the agent's connection is in its life."""

    AWAITING_WELCOME = "awaiting_welcome"
    """``auth`` sent (by the I/O layer); only ``welcome`` may arrive."""
    ESTABLISHED = "established"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class WelcomeReceived:
    """The server accepted us; ``welcome.peers`` is the complete peer list to configure."""

    welcome: WelcomeMessage


@dataclass(frozen=True, slots=True)
class PeersChanged:
    """Net effect of one delta: peers added or changed, and ids of peers that went away.

    Upserts identical to the known peer and removals of unknown peers are left out, and a
    peer touched several times in one delta appears once with its final state.
    """

    upserted: tuple[Peer, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RelaysChanged:
    """The relays that are up changed (version 2); ``relays`` is the whole new list."""

    relays: tuple[Relay, ...]


AgentEvent = PongMessage | WelcomeReceived | PeersChanged | RelaysChanged
"""What :meth:`AgentSession.receive` yields; a ``PongMessage`` must be sent back."""

_ABSENT: Final = object()


class AgentSession:
    """Protocol rules for the agent's connection to the server."""

    __slots__ = (
        "_deadline",
        "_peers",
        "close_code",
        "connected_at",
        "last_received_at",
        "max_message_bytes",
        "relays",
        "state",
        "welcome",
    )

    def __init__(
        self,
        now: float,
        *,
        welcome_timeout: float = DEFAULT_WELCOME_TIMEOUT,
        max_message_bytes: int = MAX_SERVER_MESSAGE_BYTES,
    ) -> None:
        if not welcome_timeout > 0:
            raise ValueError("welcome_timeout must be > 0")
        self.state = AgentState.AWAITING_WELCOME
        self.close_code: CloseCode | None = None
        self.connected_at: Final = now
        self.last_received_at: float | None = None
        self.max_message_bytes: Final = max_message_bytes
        self.welcome: WelcomeMessage | None = None
        self._peers: dict[str, Peer] = {}
        self.relays: tuple[Relay, ...] = ()
        """The relays that are up, in the server's order of preference."""
        self._deadline = now + welcome_timeout

    @property
    def peers(self) -> Mapping[str, Peer]:
        """Current peers by peer_id (read-only view; it follows later changes)."""
        return MappingProxyType(self._peers)

    @property
    def version(self) -> int | None:
        """The version this session speaks: the welcome's, once welcomed."""
        return None if self.welcome is None else self.welcome.version

    @property
    def heartbeat(self) -> Heartbeat | None:
        """The server's heartbeat parameters, known once welcomed."""
        return None if self.welcome is None else self.welcome.heartbeat

    @property
    def deadline(self) -> float:
        """When to give up on the server: no welcome in time, or silence for heartbeat
        timeout after the last frame received; ``inf`` once closed."""
        return math.inf if self.state is AgentState.CLOSED else self._deadline

    def is_expired(self, now: float) -> bool:
        """Whether the server has been silent past the deadline (half-open connection)."""
        return now >= self.deadline

    def check_deadline(self, now: float) -> None:
        """Close and raise AUTH_TIMEOUT / HEARTBEAT_TIMEOUT if the deadline has passed."""
        if not self.is_expired(now):
            return
        if self.state is AgentState.ESTABLISHED:
            raise self._fail(CloseCode.HEARTBEAT_TIMEOUT, "server silent")
        raise self._fail(CloseCode.AUTH_TIMEOUT, "no welcome in time")

    def receive(self, frame: str | bytes, now: float) -> list[AgentEvent]:
        """Apply one server frame; returns events, including any pong to send back.

        Raises :class:`ProtocolError` (and closes) if the server broke the protocol.
        """
        if self.state is AgentState.CLOSED:
            code = self.close_code if self.close_code is not None else CloseCode.NORMAL
            raise ProtocolError(code, detail="session already closed")
        self.check_deadline(now)
        try:
            message = decode_server_message(frame, self.max_message_bytes)
        except ProtocolError as exc:
            self._close(exc.code)
            raise

        if self.state is AgentState.AWAITING_WELCOME:
            if not isinstance(message, WelcomeMessage):
                raise self._fail(CloseCode.NOT_AUTHENTICATED, f"{message.type} before welcome")
            if message.version not in SUPPORTED_VERSIONS or message.version > PROTOCOL_VERSION:
                # An older server answers in the version it speaks; the I/O layer then
                # sends nothing that version lacks (``version``).
                raise self._fail(CloseCode.UNSUPPORTED_VERSION, f"version {message.version}")
            self.welcome = message
            self._peers = {peer.peer_id: peer for peer in message.peers}
            self.relays = tuple(message.relays)
            self.state = AgentState.ESTABLISHED
            events: list[AgentEvent] = [WelcomeReceived(message)]
        elif isinstance(message, WelcomeMessage):
            raise self._fail(CloseCode.NOT_AUTHENTICATED, "welcome sent twice")
        elif isinstance(message, PingMessage):
            events = [PongMessage(seq=message.seq)]
        elif isinstance(message, RelaysMessage):
            changed = tuple(message.relays) != self.relays
            self.relays = tuple(message.relays)
            events = [RelaysChanged(self.relays)] if changed else []
        else:
            delta = self._apply_delta(message)
            events = [delta] if delta.upserted or delta.removed else []

        self.last_received_at = now
        assert self.welcome is not None
        self._deadline = now + self.welcome.heartbeat.timeout
        return events

    def close(self, code: CloseCode = CloseCode.NORMAL) -> None:
        """Move to CLOSED (idempotent: the first code is kept)."""
        self._close(code)

    def _apply_delta(self, delta: PeersDeltaMessage) -> PeersChanged:
        previous: dict[str, Peer | object] = {}  # first-seen state of every touched peer
        for change in delta.changes:
            peer_id = change.peer.peer_id if isinstance(change, PeerUpsert) else change.peer_id
            previous.setdefault(peer_id, self._peers.get(peer_id, _ABSENT))
            if isinstance(change, PeerUpsert):
                self._peers[peer_id] = change.peer
            else:
                self._peers.pop(peer_id, None)
        upserted: list[Peer] = []
        removed: list[str] = []
        for peer_id, before in previous.items():
            after = self._peers.get(peer_id)
            if after is None:
                if before is not _ABSENT:
                    removed.append(peer_id)
            elif after != before:
                upserted.append(after)
        return PeersChanged(upserted=tuple(upserted), removed=tuple(removed))

    def _close(self, code: CloseCode) -> None:
        if self.state is not AgentState.CLOSED:
            self.state = AgentState.CLOSED
            self.close_code = code

    def _fail(self, code: CloseCode, detail: str) -> ProtocolError:
        self._close(code)
        return ProtocolError(code, detail=detail)
