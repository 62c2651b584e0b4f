"""An org's roster moves only by events, in id order: what each event changes, and what it
must leave alone (older events, another session's end, a repeat)."""

from __future__ import annotations

import uuid

from wiremesh.protocol import PeerRemove, PeerUpsert
from wiremesh.server.events.schemas import (
    DeviceChanged,
    DeviceRemoved,
    EndpointChanged,
    SessionEnded,
    SessionOpened,
)
from wiremesh.server.presence.directory import apply_to_roster
from wiremesh.server.presence.roster import OrgRoster

ORG = 3
FIRST = uuid.UUID(int=1)
SECOND = uuid.UUID(int=2)


def enrolled(event_id: int, hostname: str = "alpha", key: str | None = None) -> DeviceChanged:
    return DeviceChanged(
        id=event_id,
        org_id=ORG,
        kind="device_enrolled",
        device_id=1,
        user_id=1,
        peer_id="peer-a",
        hostname=hostname,
        virtual_ip="100.64.0.1",
        public_key=key,
        network="100.64.0.0/24",
    )


def opened(event_id: int, connection: uuid.UUID, port: int = 51820) -> SessionOpened:
    return SessionOpened(
        id=event_id,
        org_id=ORG,
        peer_id="peer-a",
        connection_id=connection,
        server_id="replica-1",
        public_ip="198.18.0.5",
        public_port=port,
    )


def ended(event_id: int, connection: uuid.UUID) -> SessionEnded:
    return SessionEnded(
        id=event_id,
        org_id=ORG,
        peer_id="peer-a",
        connection_id=connection,
        server_id="replica-1",
        reason="superseded",
    )


def test_a_device_joins_goes_online_moves_and_goes_offline() -> None:
    roster = OrgRoster(org_id=ORG, version=0)
    change = apply_to_roster(roster, enrolled(1))
    assert isinstance(change, PeerUpsert)
    assert (change.peer.hostname, change.peer.online) == ("alpha", False)
    change = apply_to_roster(roster, opened(2, FIRST))
    assert isinstance(change, PeerUpsert)
    assert (change.peer.online, change.peer.endpoint) == (True, "198.18.0.5:51820")
    change = apply_to_roster(
        roster,
        EndpointChanged(
            id=3,
            org_id=ORG,
            peer_id="peer-a",
            connection_id=FIRST,
            public_ip="198.18.0.5",
            public_port=40000,
        ),
    )
    assert isinstance(change, PeerUpsert)
    assert change.peer.endpoint == "198.18.0.5:40000"
    change = apply_to_roster(roster, ended(4, FIRST))
    assert isinstance(change, PeerUpsert)
    assert (change.peer.online, change.peer.endpoint) == (False, None)
    assert roster.version == 4


def test_a_newer_session_stays_online_when_the_older_one_s_end_arrives() -> None:
    """A device moved to another replica: its new session opened in the transaction that
    ended the old one; the old session's end must not take the device offline."""
    roster = OrgRoster(org_id=ORG, version=0)
    apply_to_roster(roster, enrolled(1))
    apply_to_roster(roster, opened(2, FIRST))
    assert apply_to_roster(roster, opened(3, SECOND, port=40001)) is not None
    assert apply_to_roster(roster, ended(4, FIRST)) is None
    peer = roster.peer("peer-a")
    assert peer is not None
    assert (peer.online, peer.endpoint) == (True, "198.18.0.5:40001")


def test_events_the_roster_already_reflects_change_nothing() -> None:
    roster = OrgRoster(org_id=ORG, version=10)  # loaded from a snapshot at event 10
    assert apply_to_roster(roster, enrolled(7)) is None
    assert roster.devices == {}
    assert apply_to_roster(roster, enrolled(11)) is not None
    assert apply_to_roster(roster, enrolled(12)) is None, "the same identity again: no delta"
    change = apply_to_roster(roster, enrolled(13, key="k" * 43 + "="))
    assert isinstance(change, PeerUpsert)
    assert change.peer.public_key == "k" * 43 + "="


def test_a_removed_device_leaves_the_roster_and_its_welcome() -> None:
    roster = OrgRoster(org_id=ORG, version=0)
    apply_to_roster(roster, enrolled(1))
    apply_to_roster(roster, opened(2, FIRST))
    assert roster.peers_json("peer-other").count("peer-a") == 1
    revoked = DeviceRemoved(id=3, org_id=ORG, kind="device_revoked", device_id=1, peer_id="peer-a")
    change = apply_to_roster(roster, revoked)
    assert change == PeerRemove(peer_id="peer-a")
    assert roster.peers_json("peer-other") == "[]"
    assert apply_to_roster(roster, ended(4, FIRST)) is None, "gone: nothing more to say"
