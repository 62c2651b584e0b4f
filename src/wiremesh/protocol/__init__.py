"""The versioned agent <-> server message protocol, with no I/O.

Messages, their JSON encoding, close codes and the per-connection state machines for
both ends. Nothing here reads a socket or a clock: callers pass frames and ``now``
(float seconds from any monotonic clock) in and act on the results. See
``docs/protocol.md`` for the wire format and rules.
"""

from .agent import (
    DEFAULT_WELCOME_TIMEOUT,
    AgentEvent,
    AgentSession,
    AgentState,
    PeersChanged,
    WelcomeReceived,
)
from .codec import (
    MAX_MESSAGE_BYTES,
    MAX_SERVER_MESSAGE_BYTES,
    AgentMessage,
    Message,
    ServerMessage,
    decode_agent_message,
    decode_server_message,
    encode,
    encode_peers_delta,
    frame_size,
)
from .errors import (
    CLOSE_REASONS,
    MAX_CLOSE_REASON_BYTES,
    NO_RECONNECT_CODES,
    CloseCode,
    ProtocolError,
    close_reason,
    should_reconnect,
)
from .messages import (
    MAX_SEQ,
    PROTOCOL_VERSION,
    AuthMessage,
    Device,
    EndpointMessage,
    Heartbeat,
    Peer,
    PeerRemove,
    PeersDeltaMessage,
    PeerUpsert,
    PingMessage,
    PongMessage,
    WelcomeMessage,
)
from .server import (
    DEFAULT_AUTH_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_PER_SECOND,
    ServerSession,
    SessionState,
    TokenBucket,
)

__all__ = [
    "CLOSE_REASONS",
    "DEFAULT_AUTH_TIMEOUT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_RATE_BURST",
    "DEFAULT_RATE_PER_SECOND",
    "DEFAULT_WELCOME_TIMEOUT",
    "MAX_CLOSE_REASON_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_SEQ",
    "MAX_SERVER_MESSAGE_BYTES",
    "NO_RECONNECT_CODES",
    "PROTOCOL_VERSION",
    "AgentEvent",
    "AgentMessage",
    "AgentSession",
    "AgentState",
    "AuthMessage",
    "CloseCode",
    "Device",
    "EndpointMessage",
    "Heartbeat",
    "Message",
    "Peer",
    "PeerRemove",
    "PeerUpsert",
    "PeersChanged",
    "PeersDeltaMessage",
    "PingMessage",
    "PongMessage",
    "ProtocolError",
    "ServerMessage",
    "ServerSession",
    "SessionState",
    "TokenBucket",
    "WelcomeMessage",
    "WelcomeReceived",
    "close_reason",
    "decode_agent_message",
    "decode_server_message",
    "encode",
    "encode_peers_delta",
    "frame_size",
    "should_reconnect",
]
