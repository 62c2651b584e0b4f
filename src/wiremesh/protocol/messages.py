"""Message models for protocol version 3 (version 1 and 2 agents are still served).

Models are frozen and strict: a frame either matches the schema exactly or is rejected,
so a buggy or hostile peer cannot smuggle in coerced values (``"1"`` for ``1``, ``true``
for ``1``) or unknown fields. Peers are validated once when built, and pydantic does not
re-validate model instances, so the server can cache ``Peer`` objects and reuse them in
every welcome and delta for free.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

__all__ = [
    "MAX_PATHS_PER_MESSAGE",
    "MAX_SEQ",
    "MAX_TIMESTAMP",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "AuthMessage",
    "Candidate",
    "Device",
    "EndpointMessage",
    "Heartbeat",
    "PathKind",
    "PathReport",
    "PathsMessage",
    "Peer",
    "PeerRemove",
    "PeerUpsert",
    "PeersDeltaMessage",
    "PingMessage",
    "PongMessage",
    "Relay",
    "RelaysMessage",
    "WelcomeMessage",
]

PROTOCOL_VERSION: Final = 3
"""The version this code speaks. Version 2 added path candidates and relays; version 3
the agent's ``paths`` report."""

SUPPORTED_VERSIONS: Final = frozenset({1, 2, 3})
"""Versions the server accepts; a version 1 agent gets frames without version 2 fields."""

PATHS_VERSION: Final = 3
"""The first version whose sessions may carry ``paths``."""

V2_ONLY_PEER_FIELDS: Final = frozenset({"candidates"})
V2_ONLY_WELCOME_FIELDS: Final = frozenset({"relays", "public_ip"})

MAX_CANDIDATES: Final = 8
"""Addresses one device may announce, and candidates one peer may carry (plus two)."""

MAX_PATHS_PER_MESSAGE: Final = 1024
"""Rows in one ``paths`` message; an agent with more peers sends several."""

MAX_TIMESTAMP: Final = 253_402_300_799.0
"""Latest unix time a report may carry (9999-12-31T23:59:59Z): every datetime type holds it."""

MAX_SEQ: Final = 2**53 - 1
"""Largest ping sequence number: the largest integer every JSON implementation keeps exact."""

_MAX_IP_CHARS: Final = 45  # longest textual IPv6 address (with embedded IPv4)
_MAX_CIDR_CHARS: Final = _MAX_IP_CHARS + 4
_MAX_ENDPOINT_CHARS: Final = _MAX_IP_CHARS + 8  # "[" + ip + "]:" + 5-digit port


def _canonical_ip(value: str) -> str:
    """Accept an IPv4/IPv6 address and return its canonical text, so peers compare equal."""
    return str(ipaddress.ip_address(value))


def _canonical_network(value: str) -> str:
    """Accept a CIDR with no host bits set (``10.0.0.0/16``, not ``10.0.0.1/16``)."""
    return str(ipaddress.ip_network(value, strict=True))


def _canonical_endpoint(value: str) -> str:
    """Accept ``ip:port`` or ``[ipv6]:port``; hostnames are not allowed (no DNS in peers)."""
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise ValueError("IPv6 endpoint must look like [ip]:port")
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host)
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            raise ValueError("endpoint must look like ip:port")
        address = ipaddress.IPv4Address(host)
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise ValueError("endpoint port must be 1..65535")
    if address.version == 6:
        return f"[{address}]:{int(port)}"
    return f"{address}:{int(port)}"


IpAddress = Annotated[
    str, StringConstraints(max_length=_MAX_IP_CHARS), AfterValidator(_canonical_ip)
]
Network = Annotated[
    str, StringConstraints(max_length=_MAX_CIDR_CHARS), AfterValidator(_canonical_network)
]
Endpoint = Annotated[
    str, StringConstraints(max_length=_MAX_ENDPOINT_CHARS), AfterValidator(_canonical_endpoint)
]
WireGuardKey = Annotated[
    str,
    # 32 bytes in base64: 43 significant chars, the last of which carries 2 padding bits.
    StringConstraints(pattern=r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$"),
]
PeerId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Hostname = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
Seconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]
UnixTime = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


CandidateKind = Literal["public", "lan", "ws"]


class Candidate(_Model):
    """An address where a peer's WireGuard may be reached, and how the server knows it.

    ``public``: the mapping a relay saw the peer's packets come from (what its NAT made);
    ``lan``: an address of the peer's own interfaces with its listen port (same NAT only);
    ``ws``: the address the server saw the WebSocket come from, with the listen port (a
    guess, right only for port-preserving NATs; it also tells who shares a NAT).
    """

    addr: Endpoint
    kind: CandidateKind


class Relay(_Model):
    """A public WireGuard host that forwards between devices that cannot meet directly."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    public_key: WireGuardKey
    endpoint: Endpoint


# --- agent -> server -------------------------------------------------------------------


class AuthMessage(_Model):
    """First frame of every connection: who the agent is and which protocol it speaks."""

    type: Literal["auth"] = "auth"
    version: int = PROTOCOL_VERSION
    credential: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    listen_port: Port | None = None
    agent_version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    candidates: list[Endpoint] = Field(default_factory=list, max_length=MAX_CANDIDATES)
    """Version 2: the agent's own addresses with its listen port (``lan`` candidates)."""


class PongMessage(_Model):
    """Answer to the ping with the same ``seq``; proves the agent is alive."""

    type: Literal["pong"] = "pong"
    seq: Seq


class EndpointMessage(_Model):
    """The agent's WireGuard listen port changed, so its peers need a new endpoint."""

    type: Literal["endpoint"] = "endpoint"
    listen_port: Port


PathKind = Literal["direct", "local", "relay", "none"]


class PathReport(_Model):
    """How this device reaches one peer right now (``agent status`` shows the same).

    ``direct``/``local``: the peer's own address (its NAT mapping / its LAN address);
    ``relay``: through the relay at ``endpoint``; ``none``: nothing carries it yet.
    """

    peer_id: PeerId
    path: PathKind
    endpoint: Endpoint | None = None
    last_handshake: UnixTime | None = None
    """Unix time of the last WireGuard handshake with the peer itself; ``None``: never."""


class PathsMessage(_Model):
    """Version 3: the agent's paths to its peers, so the server can show them.

    ``full``: these rows replace everything the device reported before (the first chunk of
    a report that does not fit one message); otherwise only these rows changed.
    """

    type: Literal["paths"] = "paths"
    full: bool
    paths: list[PathReport] = Field(max_length=MAX_PATHS_PER_MESSAGE)

    @model_validator(mode="after")
    def _unique_peer_ids(self) -> PathsMessage:
        # Two rows for one peer would make the stored path depend on row order.
        if len({row.peer_id for row in self.paths}) != len(self.paths):
            raise ValueError("duplicate peer_id in paths")
        return self


# --- server -> agent -------------------------------------------------------------------


class Peer(_Model):
    """One other device of the network, as the agent should configure it."""

    peer_id: PeerId
    hostname: Hostname | None = None
    virtual_ip: IpAddress
    public_key: WireGuardKey | None = None
    endpoint: Endpoint | None = None
    online: bool = False
    candidates: list[Candidate] = Field(default_factory=list, max_length=MAX_CANDIDATES + 2)
    """Version 2: every address the peer may be reached at; ``endpoint`` stays for version 1."""


class Device(_Model):
    """The agent's own identity in the network."""

    peer_id: PeerId
    virtual_ip: IpAddress
    network: Network
    hostname: Hostname | None = None

    @model_validator(mode="after")
    def _ip_inside_network(self) -> Device:
        if ipaddress.ip_address(self.virtual_ip) not in ipaddress.ip_network(self.network):
            raise ValueError("virtual_ip is outside network")
        return self


class Heartbeat(_Model):
    """Ping cadence; the side that hears nothing for ``timeout`` seconds drops the link."""

    interval: Seconds
    timeout: Seconds

    @model_validator(mode="after")
    def _timeout_exceeds_interval(self) -> Heartbeat:
        # Otherwise a healthy agent would time out before the next ping is even sent.
        if self.timeout <= self.interval:
            raise ValueError("timeout must be greater than interval")
        return self


class WelcomeMessage(_Model):
    """Auth accepted: the agent's identity, heartbeat parameters and the full peer list."""

    type: Literal["welcome"] = "welcome"
    version: int = PROTOCOL_VERSION
    connection_id: uuid.UUID
    device: Device
    heartbeat: Heartbeat
    peers: list[Peer] = Field(default_factory=list)
    relays: list[Relay] = Field(default_factory=list)
    """Version 2: the relays that are up, in the order agents prefer them."""
    public_ip: IpAddress | None = None
    """Version 2: the address the server saw this agent's connection come from."""

    @model_validator(mode="after")
    def _unique_peer_ids(self) -> WelcomeMessage:
        # A duplicate would make the agent's result depend on list order: a server bug.
        if len({peer.peer_id for peer in self.peers}) != len(self.peers):
            raise ValueError("duplicate peer_id in peers")
        return self


class PingMessage(_Model):
    """Liveness probe; the agent must answer with a pong carrying the same ``seq``."""

    type: Literal["ping"] = "ping"
    seq: Seq


class PeerUpsert(_Model):
    """Add ``peer`` or replace the peer with the same ``peer_id`` entirely."""

    op: Literal["upsert"] = "upsert"
    peer: Peer


class PeerRemove(_Model):
    """Remove a peer; removing an unknown peer is a no-op, so deltas are idempotent."""

    op: Literal["remove"] = "remove"
    peer_id: PeerId


class PeersDeltaMessage(_Model):
    """Incremental peer changes, applied in order on top of the welcome's list."""

    type: Literal["peers_delta"] = "peers_delta"
    changes: list[Annotated[PeerUpsert | PeerRemove, Field(discriminator="op")]] = Field(
        min_length=1
    )


class RelaysMessage(_Model):
    """Version 2: the relays that are up changed; replaces the welcome's list."""

    type: Literal["relays"] = "relays"
    relays: list[Relay] = Field(default_factory=list)
