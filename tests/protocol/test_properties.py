"""Property tests: generated messages round-trip, and no input escapes as anything but
ProtocolError."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wiremesh.protocol import (
    MAX_SEQ,
    AgentSession,
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
    ProtocolError,
    ServerSession,
    WelcomeMessage,
    decode_agent_message,
    decode_server_message,
    encode,
)

ports = st.integers(1, 65535)
seqs = st.integers(0, MAX_SEQ)
ips = st.ip_addresses().map(str)
keys = st.binary(min_size=32, max_size=32).map(lambda raw: base64.b64encode(raw).decode())
hostnames = st.text(min_size=1, max_size=253)
peer_ids = st.text(min_size=1, max_size=64)


def _endpoint(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


endpoints = st.builds(_endpoint, st.ip_addresses(), ports)
peers = st.builds(
    Peer,
    peer_id=peer_ids,
    hostname=st.none() | hostnames,
    virtual_ip=ips,
    public_key=st.none() | keys,
    endpoint=st.none() | endpoints,
    online=st.booleans(),
)


@st.composite
def devices(draw: st.DrawFn) -> Device:
    address = draw(st.ip_addresses())
    prefix = draw(st.integers(0, address.max_prefixlen))
    network = ipaddress.ip_network((address, prefix), strict=False)
    host = network[draw(st.integers(0, network.num_addresses - 1))]
    return Device(
        peer_id=draw(peer_ids),
        virtual_ip=str(host),
        network=str(network),
        hostname=draw(st.none() | hostnames),
    )


@st.composite
def heartbeats(draw: st.DrawFn) -> Heartbeat:
    interval = draw(st.floats(0.001, 1000.0))
    timeout = draw(st.floats(interval, 86_400.0, exclude_min=True))
    return Heartbeat(interval=interval, timeout=timeout)


welcomes = st.builds(
    WelcomeMessage,
    connection_id=st.uuids(),
    device=devices(),
    heartbeat=heartbeats(),
    peers=st.lists(peers, max_size=5, unique_by=lambda peer: peer.peer_id),
)
deltas = st.builds(
    PeersDeltaMessage,
    changes=st.lists(
        st.builds(PeerUpsert, peer=peers) | st.builds(PeerRemove, peer_id=peer_ids),
        min_size=1,
        max_size=5,
    ),
)
server_messages = welcomes | deltas | st.builds(PingMessage, seq=seqs)
agent_messages = (
    st.builds(
        AuthMessage,
        version=st.integers(-(2**63), 2**63),
        credential=st.text(min_size=1, max_size=256),
        listen_port=st.none() | ports,
        agent_version=st.text(min_size=1, max_size=64),
    )
    | st.builds(PongMessage, seq=seqs)
    | st.builds(EndpointMessage, listen_port=ports)
)


@given(agent_messages)
def test_agent_messages_round_trip(message: Any) -> None:
    assert decode_agent_message(encode(message)) == message


@given(server_messages)
def test_server_messages_round_trip(message: Any) -> None:
    assert decode_server_message(encode(message)) == message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["type", "version", "seq", "credential", "listen_port", "agent_version", "peers",
     "changes", "op", "peer", "peer_id", "device", "heartbeat", "connection_id"]
)  # fmt: skip
type_names = st.sampled_from(
    ["auth", "pong", "endpoint", "welcome", "ping", "peers_delta", "other"]
)
near_messages = st.builds(
    lambda type_, fields: json.dumps({"type": type_, **fields}),
    type_names,
    st.dictionaries(field_names, json_values, max_size=6),
)
frames = st.text() | st.binary() | json_values.map(json.dumps) | near_messages


def _decodes_or_protocol_error(decode: Any, text: str | bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(text)


@settings(max_examples=300)
@given(frames)
def test_decoders_raise_only_protocol_error(text: str | bytes) -> None:
    _decodes_or_protocol_error(decode_agent_message, text)
    _decodes_or_protocol_error(decode_server_message, text)


@given(st.lists(st.tuples(frames, st.floats(0, 100)), max_size=10))
def test_sessions_raise_only_protocol_error(inputs: list[tuple[str | bytes, float]]) -> None:
    server, agent = ServerSession(0.0), AgentSession(0.0)
    for text, now in sorted(inputs, key=lambda pair: pair[1]):
        _decodes_or_protocol_error(lambda t: server.receive(t, now), text)  # noqa: B023
        _decodes_or_protocol_error(lambda t: agent.receive(t, now), text)  # noqa: B023


def test_generated_connection_ids_are_uuids() -> None:
    # Guards the strategy above: a uuid field that silently became str would still round-trip.
    welcome = WelcomeMessage.model_fields["connection_id"]
    assert welcome.annotation is uuid.UUID
