"""Turning messages into JSON text frames and back.

Decoding never raises anything but :class:`ProtocolError`, whose code says how to close
the connection: size first (cheap, before any parsing), then JSON + schema validation in
one pass inside pydantic-core.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Final, TypeVar

from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from .errors import CloseCode, ProtocolError
from .messages import (
    MAX_PATHS_PER_MESSAGE,
    SUPPORTED_VERSIONS,
    V2_ONLY_PEER_FIELDS,
    AuthMessage,
    EndpointMessage,
    PathReport,
    PathsMessage,
    Peer,
    PeerRemove,
    PeersDeltaMessage,
    PeerUpsert,
    PingMessage,
    PongMessage,
    RelaysMessage,
    WelcomeMessage,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_PATHS_MESSAGE_BYTES",
    "MAX_SERVER_MESSAGE_BYTES",
    "AgentMessage",
    "Message",
    "ServerMessage",
    "decode_agent_message",
    "decode_server_message",
    "encode",
    "encode_peers_delta",
    "frame_size",
    "paths_frames",
    "peer_json",
]

MAX_MESSAGE_BYTES: Final = 4096
"""Largest agent -> server frame. Agents only send small messages; this caps server work."""

MAX_PATHS_MESSAGE_BYTES: Final = 64 * 1024
"""Largest frame of an established version 3 session (its ``paths`` reports): the server's
WebSocket layer stops larger frames anyway. About 500 rows fit."""

MAX_SERVER_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""Largest server -> agent frame: a welcome listing tens of thousands of peers fits."""


def _message_type(value: Any) -> str | None:
    """Discriminator that only treats a *string* ``type`` as a tag.

    ``{"type": 5}`` is then MALFORMED rather than UNKNOWN_TYPE: UNKNOWN_TYPE is reserved
    for well-formed messages from a newer peer that we do not understand.
    """
    tag = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return tag if isinstance(tag, str) else None


AgentMessage = AuthMessage | PongMessage | EndpointMessage | PathsMessage
ServerMessage = WelcomeMessage | PingMessage | PeersDeltaMessage | RelaysMessage
Message = AgentMessage | ServerMessage

_AGENT_ADAPTER: Final[TypeAdapter[AgentMessage]] = TypeAdapter(
    Annotated[
        Annotated[AuthMessage, Tag("auth")]
        | Annotated[PongMessage, Tag("pong")]
        | Annotated[EndpointMessage, Tag("endpoint")]
        | Annotated[PathsMessage, Tag("paths")],
        Discriminator(_message_type),
    ]
)
_SERVER_ADAPTER: Final[TypeAdapter[ServerMessage]] = TypeAdapter(
    Annotated[
        Annotated[WelcomeMessage, Tag("welcome")]
        | Annotated[PingMessage, Tag("ping")]
        | Annotated[PeersDeltaMessage, Tag("peers_delta")]
        | Annotated[RelaysMessage, Tag("relays")],
        Discriminator(_message_type),
    ]
)


def encode(message: Message) -> str:
    """Serialize a message as a compact JSON text frame.

    pydantic-core's serializer already emits compact JSON and is several times faster than
    ``json.dumps(model_dump())``, which matters for 10,000-peer welcomes.
    """
    return message.model_dump_json()


def encode_peers_delta(changes: Iterable[PeerUpsert | PeerRemove], version: int = 2) -> str:
    """Build one peers_delta frame, so the server encodes once and fans out the same string.

    ``version`` 1 leaves out the fields a version 1 agent would refuse.
    """
    message = PeersDeltaMessage(changes=list(changes))
    if version >= 2:
        return encode(message)
    return message.model_dump_json(
        exclude={"changes": {"__all__": {"peer": set(V2_ONLY_PEER_FIELDS)}}}
    )


def paths_frames(
    rows: Sequence[PathReport],
    *,
    full: bool,
    max_bytes: int = MAX_PATHS_MESSAGE_BYTES,
    max_rows: int = MAX_PATHS_PER_MESSAGE,
) -> list[str]:
    """One report as ``paths`` frames within both limits; only the first carries ``full``.

    Rows are encoded once each and joined, so chunking 10,000 rows costs one encoding pass.
    A full report of no rows is still one frame: it clears what the server holds.
    """
    frames: list[str] = []
    heads = ('{"type":"paths","full":true,"paths":[', '{"type":"paths","full":false,"paths":[')
    chunk: list[str] = []
    size = 0

    def head() -> str:
        return heads[0] if full and not frames else heads[1]

    for row in rows:
        encoded = row.model_dump_json()
        extra = frame_size(encoded) + (1 if chunk else 0)
        if chunk and (len(chunk) >= max_rows or len(head()) + size + extra + 2 > max_bytes):
            frames.append(head() + ",".join(chunk) + "]}")
            chunk, size, extra = [], 0, frame_size(encoded)
        chunk.append(encoded)
        size += extra
    if chunk or (full and not frames):
        frames.append(head() + ",".join(chunk) + "]}")
    return frames


def frame_size(frame: str | bytes) -> int:
    """Size of ``frame`` on the wire in bytes (text frames are UTF-8)."""
    if isinstance(frame, bytes):
        return len(frame)
    if frame.isascii():  # O(1) in CPython; the common case needs no encoding pass
        return len(frame)
    # surrogatepass: a lone surrogate must be measured, not crash; decoding rejects it later.
    return len(frame.encode("utf-8", "surrogatepass"))


def decode_agent_message(frame: str | bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> AgentMessage:
    """Parse and validate an agent -> server frame, or raise :class:`ProtocolError`."""
    return _decode(_AGENT_ADAPTER, frame, max_bytes, "auth")


def decode_server_message(
    frame: str | bytes, max_bytes: int = MAX_SERVER_MESSAGE_BYTES
) -> ServerMessage:
    """Parse and validate a server -> agent frame, or raise :class:`ProtocolError`."""
    return _decode(_SERVER_ADAPTER, frame, max_bytes, "welcome")


_T = TypeVar("_T")


def _decode(adapter: TypeAdapter[_T], frame: str | bytes, max_bytes: int, hello: str) -> _T:
    if frame_size(frame) > max_bytes:
        raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, detail=f"limit is {max_bytes} bytes")
    try:
        return adapter.validate_json(frame)
    except ValidationError as exc:
        raise _classify(exc, frame, hello) from None
    except (ValueError, TypeError, RecursionError) as exc:  # defensive: never leak others
        raise ProtocolError(CloseCode.MALFORMED, detail=type(exc).__name__) from None


def _classify(exc: ValidationError, frame: str | bytes, hello: str) -> ProtocolError:
    """Map a validation failure to the close code that best tells the peer what went wrong."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else None
    if first is not None and first["type"] == "union_tag_invalid" and not first["loc"]:
        tag = (first.get("ctx") or {}).get("tag", "?")
        return ProtocolError(CloseCode.UNKNOWN_TYPE, detail=f"type {str(tag)[:64]!r}")
    if _is_other_version_hello(frame, hello):
        # A newer peer's hello may carry fields we do not know; the version is the real
        # problem and tells the agent to stop retrying instead of looping on MALFORMED.
        return ProtocolError(CloseCode.UNSUPPORTED_VERSION, detail="version mismatch")
    summary = "; ".join(
        f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['type']}" for err in errors[:3]
    )
    return ProtocolError(CloseCode.MALFORMED, detail=summary)


def _is_other_version_hello(frame: str | bytes, hello: str) -> bool:
    """Whether ``frame`` is an auth/welcome object carrying an integer version we don't speak.

    Only runs on the error path, and frames were size-checked, so parsing twice is fine.
    """
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        return False
    if not isinstance(obj, dict) or obj.get("type") != hello:
        return False
    version = obj.get("version")
    return type(version) is int and version not in SUPPORTED_VERSIONS


def peer_json(peer: Peer, version: int = 2) -> str:
    """One peer as the JSON a ``version`` agent reads (the server caches these)."""
    if version >= 2:
        return peer.model_dump_json()
    return peer.model_dump_json(exclude=set(V2_ONLY_PEER_FIELDS))
