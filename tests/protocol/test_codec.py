from __future__ import annotations

import json
from typing import Any

import pytest

from wiremesh.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_SERVER_MESSAGE_BYTES,
    AuthMessage,
    CloseCode,
    EndpointMessage,
    PeerRemove,
    PeersDeltaMessage,
    PeerUpsert,
    PingMessage,
    PongMessage,
    ProtocolError,
    WelcomeMessage,
    decode_agent_message,
    decode_server_message,
    encode,
    encode_peers_delta,
    frame_size,
)

from .helpers import auth_frame, frame, make_peer, make_welcome, wg_key


def agent_error(text: str | bytes) -> CloseCode:
    with pytest.raises(ProtocolError) as info:
        decode_agent_message(text)
    return info.value.code


def server_error(text: str | bytes) -> CloseCode:
    with pytest.raises(ProtocolError) as info:
        decode_server_message(text)
    return info.value.code


def peer_fields(**overrides: Any) -> dict[str, Any]:
    fields = make_peer(1).model_dump(mode="json")
    fields.update(overrides)
    return fields


def test_encode_is_compact_json_with_type_first() -> None:
    assert encode(PongMessage(seq=7)) == '{"type":"pong","seq":7}'
    assert encode(EndpointMessage(listen_port=51820)) == '{"type":"endpoint","listen_port":51820}'


def test_agent_messages_decode() -> None:
    auth = decode_agent_message(auth_frame())
    assert auth == AuthMessage(
        version=1, credential="wmk_secret", listen_port=51820, agent_version="0.1.0"
    )
    assert decode_agent_message(frame(type="pong", seq=3)) == PongMessage(seq=3)
    assert decode_agent_message(frame(type="endpoint", listen_port=1)) == EndpointMessage(
        listen_port=1
    )


def test_auth_listen_port_may_be_null_or_omitted() -> None:
    assert decode_agent_message(auth_frame(listen_port=None)).listen_port is None  # type: ignore[union-attr]
    fields = json.loads(auth_frame())
    del fields["listen_port"]
    assert decode_agent_message(json.dumps(fields)).listen_port is None  # type: ignore[union-attr]


def test_server_messages_round_trip() -> None:
    welcome = make_welcome()
    delta = PeersDeltaMessage(changes=[PeerUpsert(peer=make_peer(3)), PeerRemove(peer_id="peer-1")])
    for message in (welcome, PingMessage(seq=0), delta):
        assert decode_server_message(encode(message)) == message


@pytest.mark.parametrize(
    "text",
    [
        auth_frame(version="1"),  # no coercion from strings
        auth_frame(version=True),  # nor from booleans
        auth_frame(credential=""),
        auth_frame(credential="x" * 257),
        auth_frame(agent_version="v" * 65),
        auth_frame(listen_port=0),
        auth_frame(listen_port=65536),
        auth_frame(listen_port=51820.0),
        auth_frame(extra="field"),
        frame(type="auth", version=1, agent_version="1"),  # no credential
        frame(type="pong", seq=-1),
        frame(type="pong", seq=2**53),
        frame(type="pong", seq=True),
        frame(type="pong"),
        frame(type="endpoint", listen_port=None),
        '{"type":"pong","seq":1',  # invalid JSON
        "[]",
        "null",
        '"pong"',
        "{}",  # no type
        frame(type=5),  # a non-string type is malformed, not unknown
        frame(type=None),
        b"\xff\xfe",  # not UTF-8
        '{"type":"pong\ud800","seq":1}',  # lone surrogate
        "[" * 2000 + "]" * 2000,  # deep nesting must not blow the stack
    ],
)
def test_invalid_agent_frames_are_malformed(text: str) -> None:
    assert agent_error(text) is CloseCode.MALFORMED


@pytest.mark.parametrize("type_", ["nope", "ping", "welcome", "peers_delta", "AUTH", ""])
def test_unknown_string_type_from_agent_is_unknown_type(type_: str) -> None:
    # Server->agent types are unknown in the agent->server direction.
    assert agent_error(frame(type=type_, seq=1)) is CloseCode.UNKNOWN_TYPE


@pytest.mark.parametrize("type_", ["nope", "pong", "auth", "endpoint", "PING", ""])
def test_unknown_string_type_from_server_is_unknown_type(type_: str) -> None:
    assert server_error(frame(type=type_, seq=1)) is CloseCode.UNKNOWN_TYPE


def test_auth_of_another_version_is_unsupported_even_with_unknown_fields() -> None:
    newer = auth_frame(version=4, capabilities=["ipv6"])
    assert agent_error(newer) is CloseCode.UNSUPPORTED_VERSION
    # ...but an unknown field with our own version is just malformed.
    assert agent_error(auth_frame(capabilities=["ipv6"])) is CloseCode.MALFORMED


def test_welcome_of_another_version_is_unsupported_even_with_unknown_fields() -> None:
    fields = make_welcome().model_dump(mode="json")
    fields.update(version=4, features={})
    assert server_error(json.dumps(fields)) is CloseCode.UNSUPPORTED_VERSION


def test_agent_frame_size_limit_is_inclusive_and_counts_utf8_bytes() -> None:
    base = '{"type":"pong","seq":1}'
    exactly = base + " " * (MAX_MESSAGE_BYTES - len(base))
    assert decode_agent_message(exactly) == PongMessage(seq=1)
    assert agent_error(exactly + " ") is CloseCode.MESSAGE_TOO_BIG
    assert agent_error((exactly + " ").encode()) is CloseCode.MESSAGE_TOO_BIG
    # 1366 characters but 4098 bytes: the limit is on bytes, not characters.
    euros = "€" * 1366
    assert len(euros) < MAX_MESSAGE_BYTES < frame_size(euros)
    assert agent_error(euros) is CloseCode.MESSAGE_TOO_BIG


def test_frame_size_counts_lone_surrogates_instead_of_crashing() -> None:
    assert frame_size("\ud800") == 3
    assert frame_size(b"abc") == 3
    assert frame_size("aé") == 3


@pytest.mark.parametrize(
    "overrides",
    [
        {"public_key": wg_key(1)[:-1]},  # 43 chars
        {"public_key": wg_key(1) + "="},
        {"public_key": "B" * 43 + "="},  # last char leaves padding bits set
        {"public_key": "!" * 43 + "="},
        {"virtual_ip": "10.0.0.256"},
        {"virtual_ip": "10.0.0.01"},
        {"virtual_ip": "host.example"},
        {"endpoint": "198.51.100.1"},
        {"endpoint": "198.51.100.1:0"},
        {"endpoint": "198.51.100.1:65536"},
        {"endpoint": "198.51.100.1:+1"},
        {"endpoint": "198.51.100.1:\u0663"},  # arabic-indic digit three
        {"endpoint": "2001:db8::1:51820"},  # IPv6 needs brackets
        {"endpoint": "[198.51.100.1]:51820"},
        {"endpoint": "[2001:db8::1]51820"},
        {"endpoint": "vpn.example.com:51820"},
        {"peer_id": ""},
        {"peer_id": "p" * 65},
        {"hostname": ""},
        {"hostname": "h" * 254},
        {"online": 1},
        {"online": "true"},
    ],
)
def test_invalid_peers_are_malformed(overrides: dict[str, Any]) -> None:
    delta = {"type": "peers_delta", "changes": [{"op": "upsert", "peer": peer_fields(**overrides)}]}
    assert server_error(json.dumps(delta)) is CloseCode.MALFORMED


def test_peer_addresses_are_canonicalised() -> None:
    fields = peer_fields(virtual_ip="FD00:0::1", endpoint="[2001:DB8:0::1]:51820")
    delta = {"type": "peers_delta", "changes": [{"op": "upsert", "peer": fields}]}
    message = decode_server_message(json.dumps(delta))
    assert isinstance(message, PeersDeltaMessage)
    change = message.changes[0]
    assert isinstance(change, PeerUpsert)
    assert change.peer.virtual_ip == "fd00::1"
    assert change.peer.endpoint == "[2001:db8::1]:51820"


def welcome_with(**overrides: Any) -> str:
    fields = make_welcome().model_dump(mode="json")
    for dotted, value in overrides.items():
        target = fields
        *parents, leaf = dotted.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return json.dumps(fields)


def test_valid_welcome_helper_decodes() -> None:
    assert isinstance(decode_server_message(welcome_with()), WelcomeMessage)


@pytest.mark.parametrize(
    "overrides",
    [
        {"connection_id": "not-a-uuid"},
        {"device__virtual_ip": "192.168.0.1"},  # outside 10.0.0.0/8
        {"device__network": "10.0.0.1/8"},  # host bits set
        {"heartbeat__interval": 0},
        {"heartbeat__timeout": 15.0},  # must exceed the interval
        {"heartbeat__timeout": "50"},
        {"peers": [peer_fields(), peer_fields()]},  # duplicate peer_id
    ],
)
def test_invalid_welcomes_are_malformed(overrides: dict[str, Any]) -> None:
    assert server_error(welcome_with(**overrides)) is CloseCode.MALFORMED


def test_non_finite_heartbeat_is_malformed() -> None:
    text = encode(make_welcome()).replace('"timeout":50.0', '"timeout":NaN')
    assert "NaN" in text
    assert server_error(text) is CloseCode.MALFORMED


def test_empty_delta_is_malformed_and_unknown_op_too() -> None:
    assert server_error(frame(type="peers_delta", changes=[])) is CloseCode.MALFORMED
    bad_op = frame(type="peers_delta", changes=[{"op": "rename", "peer_id": "p"}])
    assert server_error(bad_op) is CloseCode.MALFORMED


def test_encode_peers_delta_builds_one_shared_frame() -> None:
    changes: list[PeerUpsert | PeerRemove] = [
        PeerUpsert(peer=make_peer(5)),
        PeerRemove(peer_id="peer-9"),
    ]
    text = encode_peers_delta(changes)
    assert text == encode(PeersDeltaMessage(changes=changes))
    assert decode_server_message(text) == PeersDeltaMessage(changes=changes)
    assert json.loads(text)["changes"][1] == {"op": "remove", "peer_id": "peer-9"}


def test_ten_thousand_peer_welcome_fits_the_client_limit_and_round_trips() -> None:
    welcome = make_welcome([make_peer(i) for i in range(10_000)])
    text = encode(welcome)
    assert MAX_MESSAGE_BYTES < frame_size(text) <= MAX_SERVER_MESSAGE_BYTES
    assert decode_server_message(text) == welcome


def test_server_frame_limit_is_configurable() -> None:
    text = encode(make_welcome())
    with pytest.raises(ProtocolError) as info:
        decode_server_message(text, max_bytes=len(text) - 1)
    assert info.value.code is CloseCode.MESSAGE_TOO_BIG
    assert decode_server_message(text, max_bytes=len(text)) == make_welcome()
