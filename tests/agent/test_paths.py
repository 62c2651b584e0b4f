"""Path selection, fed peers, relays, handshake times and the clock."""

from __future__ import annotations

from tests.protocol.helpers import wg_key
from wiremesh.agent.backend import PeerState
from wiremesh.agent.paths import (
    CROSSED_RETRY_SECONDS,
    KNOCK_SECONDS,
    RELAY_RETRY_SECONDS,
    SILENT_SECONDS,
    PathSelector,
    ordered_candidates,
    silent_after,
)
from wiremesh.protocol import Candidate, Peer, Relay

A_KEY, B_KEY, ME = wg_key(1), wg_key(2), wg_key(3)
RELAY = Relay(name="r1", public_key=wg_key(9), endpoint="198.18.0.30:3478")
RELAY2 = Relay(name="r2", public_key=wg_key(10), endpoint="198.18.0.31:3478")


def peer(key: str, ip: str, *candidates: tuple[str, str]) -> Peer:
    return Peer(
        peer_id=f"p-{ip}",
        virtual_ip=ip,
        public_key=key,
        online=True,
        candidates=[Candidate.model_validate({"addr": a, "kind": k}) for a, k in candidates],
    )


B = peer(B_KEY, "100.64.0.2", ("198.18.0.202:51820", "public"), ("198.18.2.11:51820", "lan"))


def test_lan_first_only_behind_the_same_nat() -> None:
    assert ordered_candidates(B, "198.18.0.202")[0] == ("198.18.2.11:51820", "lan")
    assert ordered_candidates(B, "198.18.0.201")[0] == ("198.18.0.202:51820", "public")


def test_without_a_relay_the_peer_carries_its_route_and_walks_its_candidates() -> None:
    selector = PathSelector(own_public_key=ME, own_public_ip="198.18.0.201")
    table, readd = selector.target({"b": B}, [], {}, 1000.0)
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}
    assert table[B_KEY].endpoint == "198.18.0.202:51820"
    assert readd == {B_KEY}
    table, readd = selector.target({"b": B}, [], {}, 1001.0)
    assert readd == set()
    table, readd = selector.target({"b": B}, [], {}, 1000.0 + KNOCK_SECONDS)
    assert table[B_KEY].endpoint == "198.18.2.11:51820"
    assert readd == {B_KEY}


def test_relayed_until_the_knocking_peer_handshakes_then_direct() -> None:
    selector = PathSelector(own_public_key=ME, own_public_ip="198.18.0.201")
    table, _ = selector.target({"b": B}, [RELAY, RELAY2], {}, 1000.0)
    assert table[B_KEY].allowed_ips == frozenset()
    assert table[RELAY.public_key].allowed_ips == {"100.64.0.2/32"}
    assert table[RELAY2.public_key].allowed_ips == frozenset()  # discovery only
    relayed = selector.paths({"b": B}, {})
    assert [(p.path, p.endpoint, p.last_handshake) for p in relayed] == [
        ("relay", RELAY.endpoint, None)
    ]
    table, readd = selector.target({"b": B}, [RELAY, RELAY2], {B_KEY: 1000.5}, 1000.6)
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}
    assert table[RELAY.public_key].allowed_ips == frozenset()
    assert readd == set()
    # configured at a LAN candidate, WireGuard answered the peer's knock from its NAT mapping
    seen = {
        B_KEY: PeerState(
            frozenset(),
            "198.18.2.11:51820",
            latest_handshake=1000.5,
            in_use="198.18.0.202:40000",
        )
    }
    direct = selector.paths({"b": B}, seen)
    # the endpoint WireGuard uses (the peer may have roamed), and the peer's own handshake
    assert [(p.path, p.endpoint, p.last_handshake) for p in direct] == [
        ("direct", "198.18.0.202:40000", 1000.5)
    ]


def test_a_knocking_peer_without_a_relay_has_no_path_yet() -> None:
    selector = PathSelector(own_public_key=ME)
    selector.target({"b": B}, [], {}, 1000.0)
    assert [(p.path, p.endpoint) for p in selector.paths({"b": B}, {})] == [("none", None)]


def test_relay_gone_moves_relayed_routes_to_the_next() -> None:
    selector = PathSelector(own_public_key=ME)
    selector.target({"b": B}, [RELAY, RELAY2], {}, 1000.0)
    table, _ = selector.target({"b": B}, [RELAY2], {}, 1000.5)
    assert RELAY.public_key not in table
    assert table[RELAY2.public_key].allowed_ips == {"100.64.0.2/32"}


def test_a_direct_peer_silent_too_long_falls_back_to_the_relay() -> None:
    selector = PathSelector(own_public_key=ME)
    relay_ok = {RELAY.public_key: 1490.0}
    selector.target({"b": B}, [RELAY], {B_KEY: 1000.0, **relay_ok}, 1000.0)
    table, readd = selector.target({"b": B}, [RELAY], {B_KEY: 1000.0, **relay_ok}, 1500.0)
    assert table[B_KEY].allowed_ips == frozenset()
    assert table[RELAY.public_key].allowed_ips == {"100.64.0.2/32"}
    assert readd == {B_KEY}


def test_new_candidates_that_keep_the_endpoint_in_use_do_not_re_add_it() -> None:
    """A re-add would throw away the handshake that knocking has under way."""
    selector = PathSelector(own_public_key=ME)
    hint = peer(B_KEY, "100.64.0.2", ("198.18.0.202:51820", "ws"))
    _, readd = selector.target({"b": hint}, [], {}, 1000.0)
    assert readd == {B_KEY}
    _, readd = selector.target({"b": B}, [], {}, 1000.5)  # relay saw the same mapping
    assert readd == set()
    moved = peer(B_KEY, "100.64.0.2", ("198.18.0.202:4013", "public"), ("198.18.0.202:51820", "ws"))
    table, readd = selector.target({"b": moved}, [], {}, 1001.0)  # a new first: knock it
    assert (table[B_KEY].endpoint, readd) == ("198.18.0.202:4013", {B_KEY})


def test_a_relay_without_a_handshake_is_re_added_until_it_has_one() -> None:
    """The relay drops initiations from keys it has not been told about yet; re-adding
    makes WireGuard send again at once instead of after its 5 s retry."""
    selector = PathSelector(own_public_key=ME)
    _, readd = selector.target({"b": B}, [RELAY], {}, 1000.0)
    assert RELAY.public_key not in readd
    _, readd = selector.target({"b": B}, [RELAY], {}, 1000.0 + RELAY_RETRY_SECONDS)
    assert RELAY.public_key in readd
    _, readd = selector.target({"b": B}, [RELAY], {}, 1000.5 + RELAY_RETRY_SECONDS)
    assert RELAY.public_key not in readd
    shaken = {RELAY.public_key: 1002.2}
    _, readd = selector.target({"b": B}, [RELAY], shaken, 1010.0)
    assert RELAY.public_key not in readd


def test_one_address_to_knock_is_not_re_added_again_and_again() -> None:
    """WireGuard retries the same address every 5 s by itself; a re-add gains nothing."""
    selector = PathSelector(own_public_key=ME)
    only = peer(B_KEY, "100.64.0.2", ("198.18.0.202:51820", "ws"))
    _, readd = selector.target({"b": only}, [], {}, 1000.0)
    assert readd == {B_KEY}
    for step in (1, 2, 3):
        _, readd = selector.target({"b": only}, [], {}, 1000.0 + step * KNOCK_SECONDS)
        assert readd == set()


def test_a_peer_back_online_is_knocked_at_anew() -> None:
    """It may have restarted: our WireGuard session with it is dead, and behind a NAT only
    our knock opens the path again (WireGuard alone would wait for its rekey)."""
    selector = PathSelector(own_public_key=ME)
    relays = [RELAY]
    selector.target({"b": B}, relays, {}, 1000.0)
    table, _ = selector.target({"b": B}, relays, {B_KEY: 1000.2}, 1000.5)
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}  # direct
    offline = B.model_copy(update={"online": False})
    table, readd = selector.target({"b": offline}, relays, {B_KEY: 1000.2}, 1001.0)
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}  # going offline changes nothing
    assert B_KEY not in readd
    # back 1.8 s after our last handshake with it: a quick restart, still a dead session
    table, readd = selector.target({"b": B}, relays, {B_KEY: 1000.2}, 1002.0)
    assert table[B_KEY].allowed_ips == frozenset()  # knocking; the relay carries it meanwhile
    assert table[B_KEY].endpoint == "198.18.0.202:51820"  # from the first candidate
    assert table[RELAY.public_key].allowed_ips == {"100.64.0.2/32"}
    assert B_KEY in readd  # re-added: WireGuard sends an initiation at once
    # the old handshake does not count; a new one does
    table, _ = selector.target({"b": B}, relays, {B_KEY: 1000.2}, 1002.5)
    assert table[B_KEY].allowed_ips == frozenset()
    table, _ = selector.target({"b": B}, relays, {B_KEY: 1002.6}, 1002.7)
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}


def test_a_fresh_handshake_is_never_knocked_over() -> None:
    """The peer's knock got through before the server said it is back (or while this side
    knocked elsewhere): re-adding its entry would drop the session the peer now uses, and it
    would not knock again for minutes."""
    selector = PathSelector(own_public_key=ME)
    offline = B.model_copy(update={"online": False})
    selector.target({"b": offline}, [RELAY], {}, 1000.0)
    table, readd = selector.target({"b": B}, [RELAY], {B_KEY: 1000.9}, 1001.0)
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}
    assert B_KEY not in readd
    # new candidates while knocking, and a handshake that came from an earlier knock
    moved = peer(B_KEY, "100.64.0.2", ("198.18.0.202:40000", "public"))
    selector = PathSelector(own_public_key=ME)
    selector.target({"b": B}, [RELAY], {}, 1000.0)
    table, readd = selector.target({"b": moved}, [RELAY], {B_KEY: 1002.5}, 1005.0)
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}
    assert B_KEY not in readd


def test_a_silent_direct_peer_is_knocked_at_anew() -> None:
    """Its keepalives stopped while the server says it is online: its end of the session is
    gone (a re-add raced its knock, its NAT forgot the mapping), and it will not knock."""
    selector = PathSelector(own_public_key=ME)
    selector.target({"b": B}, [RELAY], {}, 1000.0, {B_KEY: 0})
    table, _ = selector.target({"b": B}, [RELAY], {B_KEY: 1000.2}, 1000.5, {B_KEY: 148})
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}  # direct
    # keepalives keep coming: still direct long after the handshake
    for tick in range(1, 5):
        table, readd = selector.target(
            {"b": B}, [RELAY], {B_KEY: 1000.2}, 1000.5 + 25 * tick, {B_KEY: 148 + 32 * tick}
        )
        assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}
        assert B_KEY not in readd
    heard = 1000.5 + 25 * 4
    table, readd = selector.target(
        {"b": B}, [RELAY], {B_KEY: 1000.2}, heard + SILENT_SECONDS - 1, {B_KEY: 276}
    )
    assert table[B_KEY].allowed_ips == {"100.64.0.2/32"}
    table, readd = selector.target(
        {"b": B}, [RELAY], {B_KEY: 1000.2}, heard + SILENT_SECONDS + 1, {B_KEY: 276}
    )
    assert table[B_KEY].allowed_ips == frozenset()  # the relay carries it while we knock
    assert B_KEY in readd


def test_a_peer_back_online_without_an_old_session_is_not_re_added() -> None:
    """Nothing to drop: a re-add could only drop the session its own knock just made."""
    selector = PathSelector(own_public_key=ME)
    offline = B.model_copy(update={"online": False, "candidates": []})
    selector.target({"b": offline}, [RELAY], {}, 1000.0)
    table, readd = selector.target({"b": B}, [RELAY], {}, 1000.5)
    assert table[B_KEY].endpoint == "198.18.0.202:51820"  # knocking (the endpoint turns
    assert B_KEY not in readd  # the keepalive on, which starts a handshake by itself)


def test_a_peer_that_goes_direct_is_named_once_for_a_confirming_packet() -> None:
    """Only the initiator sees a handshake at once; the answering side counts it with the
    first packet, which an idle initiator would never send."""
    selector = PathSelector(own_public_key=ME)
    selector.target({"b": B}, [RELAY], {}, 1000.0)
    assert selector.take_newly_direct() == []
    selector.target({"b": B}, [RELAY], {B_KEY: 1000.2}, 1000.5)
    assert selector.take_newly_direct() == ["100.64.0.2"]
    selector.target({"b": B}, [RELAY], {B_KEY: 1000.2}, 1001.0)
    assert selector.take_newly_direct() == []


def test_a_first_endpoint_is_set_in_place_a_changed_one_re_added() -> None:
    """Setting a first endpoint turns the keepalive on, which knocks by itself; only moving
    away from an endpoint in use needs the re-add (WireGuard would wait 5 s)."""
    selector = PathSelector(own_public_key=ME)
    bare = B.model_copy(update={"candidates": []})
    selector.target({"b": bare}, [RELAY], {}, 1000.0)
    table, readd = selector.target({"b": B}, [RELAY], {}, 1000.5)
    assert table[B_KEY].endpoint == "198.18.0.202:51820"
    assert B_KEY not in readd
    moved = peer(B_KEY, "100.64.0.2", ("198.18.0.202:40000", "public"))
    table, readd = selector.target({"b": moved}, [RELAY], {}, 1001.0)
    assert table[B_KEY].endpoint == "198.18.0.202:40000"
    assert B_KEY in readd


def test_the_silence_bound_follows_the_keepalive() -> None:
    assert silent_after(25) == SILENT_SECONDS == 40.0
    assert silent_after(10) == 40.0  # never shorter than for the default
    assert silent_after(60) == 96.0
    assert silent_after(0) is None


def test_a_long_keepalive_is_not_mistaken_for_silence_and_zero_turns_the_check_off() -> None:
    for keepalive, quiet, knocked in ((60, 90.0, False), (60, 100.0, True), (0, 3600.0, False)):
        selector = PathSelector(own_public_key=ME, keepalive=keepalive)
        selector.target({"b": B}, [RELAY], {}, 1000.0, {B_KEY: 0})
        selector.target({"b": B}, [RELAY], {B_KEY: 1000.2}, 1000.5, {B_KEY: 148})
        table, readd = selector.target(
            {"b": B}, [RELAY], {B_KEY: 1000.2 + quiet - 10}, 1000.5 + quiet, {B_KEY: 148}
        )
        assert (table[B_KEY].allowed_ips == frozenset()) is knocked, (keepalive, quiet)
        assert (B_KEY in readd) is knocked


def test_a_knock_without_a_handshake_is_re_added_once_by_the_end_whose_key_sorts_first() -> None:
    """Initiations that crossed leave both ends waiting WireGuard's 5 s: one end knocks again
    after a second, the other leaves it, so the two retries cannot cross again."""
    assert ME < A_KEY
    assert B_KEY < ME
    a = peer(A_KEY, "100.64.0.1", ("198.18.0.201:51820", "ws"))
    for key, other, retries in ((A_KEY, a, True), (B_KEY, B, False)):
        selector = PathSelector(own_public_key=ME)
        _, readd = selector.target({"p": other}, [], {}, 1000.0)
        assert readd == {key}  # the first knock
        _, readd = selector.target({"p": other}, [], {}, 1000.5)
        assert readd == set()
        _, readd = selector.target({"p": other}, [], {}, 1000.0 + CROSSED_RETRY_SECONDS)
        assert readd == ({key} if retries else set())
        for later in (1.5, 2.0, 2.5):
            _, readd = selector.target({"p": other}, [], {}, 1000.0 + later)
            assert readd == set()


def test_a_knock_that_made_a_handshake_is_not_knocked_again() -> None:
    a = peer(A_KEY, "100.64.0.1", ("198.18.0.201:51820", "ws"))
    selector = PathSelector(own_public_key=ME)
    selector.target({"a": a}, [], {}, 1000.0)
    _, readd = selector.target({"a": a}, [], {A_KEY: 1000.3}, 1000.0 + CROSSED_RETRY_SECONDS)
    assert readd == set()
    assert [p.path for p in selector.paths({"a": a}, {})] == ["direct"]
