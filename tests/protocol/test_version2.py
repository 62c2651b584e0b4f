"""Version 2: path candidates, relays, and frames a version 1 agent can still read."""

from __future__ import annotations

import json

import pytest

from tests.protocol.helpers import auth_frame, make_peer, make_welcome, wg_key
from wiremesh.protocol import (
    AgentSession,
    AuthMessage,
    Candidate,
    CloseCode,
    PeerUpsert,
    ProtocolError,
    Relay,
    RelaysChanged,
    RelaysMessage,
    ServerSession,
    decode_agent_message,
    decode_server_message,
    encode,
    encode_peers_delta,
    peer_json,
)

RELAY = Relay(name="r1", public_key=wg_key(900), endpoint="198.18.0.30:3478")


def test_a_version_1_agent_is_still_served() -> None:
    session = ServerSession(0.0)
    auth = session.receive(auth_frame(version=1), 0.0)
    assert isinstance(auth, AuthMessage)
    assert auth.version == 1
    assert auth.candidates == []


def test_auth_carries_the_agents_own_addresses() -> None:
    auth = decode_agent_message(
        auth_frame(version=2, candidates=["198.18.1.11:51820", "[2001:DB8::1]:51820"])
    )
    assert isinstance(auth, AuthMessage)
    assert auth.candidates == ["198.18.1.11:51820", "[2001:db8::1]:51820"]


@pytest.mark.parametrize(
    "candidates",
    [["host.example:51820"], ["198.18.1.11"], [f"198.18.1.{n}:1" for n in range(9)], "x"],
)
def test_bad_candidates_are_malformed(candidates: object) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_agent_message(auth_frame(version=2, candidates=candidates))
    assert info.value.code is CloseCode.MALFORMED


def test_peer_candidates_are_left_out_for_version_1() -> None:
    peer = make_peer(1).model_copy(
        update={"candidates": [Candidate(addr="198.18.0.201:2383", kind="public")]}
    )
    assert "candidates" in json.loads(peer_json(peer))
    assert "candidates" not in json.loads(peer_json(peer, version=1))
    old = json.loads(encode_peers_delta([PeerUpsert(peer=peer)], version=1))
    assert "candidates" not in old["changes"][0]["peer"]
    new = decode_server_message(encode_peers_delta([PeerUpsert(peer=peer)]))
    assert new.changes[0].peer.candidates[0].kind == "public"  # type: ignore[union-attr]


def test_unknown_candidate_kind_is_malformed() -> None:
    fields = json.loads(peer_json(make_peer(1)))
    fields["candidates"] = [{"addr": "198.18.0.1:1", "kind": "stun"}]
    delta = json.dumps({"type": "peers_delta", "changes": [{"op": "upsert", "peer": fields}]})
    with pytest.raises(ProtocolError) as info:
        decode_server_message(delta)
    assert info.value.code is CloseCode.MALFORMED


def test_relays_arrive_in_the_welcome_and_change_later() -> None:
    session = AgentSession(0.0)
    welcome = make_welcome().model_copy(update={"relays": [RELAY], "public_ip": "198.18.0.201"})
    session.receive(encode(welcome), 0.0)
    assert session.relays == (RELAY,)
    assert session.receive(encode(RelaysMessage(relays=[RELAY])), 1.0) == []
    events = session.receive(encode(RelaysMessage(relays=[])), 2.0)
    assert events == [RelaysChanged(())]
    assert session.relays == ()


@pytest.mark.parametrize("name", ["", "R1", "-r", "r" * 33, "r 1"])
def test_relay_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        Relay(name=name, public_key=wg_key(1), endpoint="198.18.0.30:3478")
