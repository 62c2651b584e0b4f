"""reconcile.plan: desired peers vs configured peers, by example and by property."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wiremesh.agent.backend import AddPeer, PeerState, RemovePeer, UpdatePeer, apply_changes
from wiremesh.agent.reconcile import plan
from wiremesh.protocol import Peer


def key(seed: int) -> str:
    return base64.b64encode(hashlib.sha256(str(seed).encode()).digest()).decode()


def peer(
    peer_id: str, key_seed: int | None, ip: str, endpoint: str | None = None, **extra: Any
) -> Peer:
    return Peer(
        peer_id=peer_id,
        virtual_ip=ip,
        public_key=None if key_seed is None else key(key_seed),
        endpoint=endpoint,
        **extra,
    )


def state(*ips: str, endpoint: str | None = None) -> PeerState:
    return PeerState(frozenset(ips), endpoint)


def test_nothing_desired_and_nothing_configured_is_no_change() -> None:
    assert plan({}, {}) == []


def test_a_new_peer_is_added_with_its_virtual_ip_as_host_route_and_its_endpoint() -> None:
    desired = {"p1": peer("p1", 1, "100.64.0.2", "198.51.100.7:51820", online=True)}
    assert plan(desired, {}) == [
        AddPeer(key(1), frozenset({"100.64.0.2/32"}), "198.51.100.7:51820")
    ]


def test_an_ipv6_peer_gets_a_128_route() -> None:
    desired = {"p1": peer("p1", 1, "fd00::5")}
    assert plan(desired, {}) == [AddPeer(key(1), frozenset({"fd00::5/128"}), None)]


def test_peers_without_a_key_or_with_our_own_key_are_skipped() -> None:
    desired = {"p1": peer("p1", None, "100.64.0.2"), "p2": peer("p2", 7, "100.64.0.3")}
    assert plan(desired, {}, own_public_key=key(7)) == []


def test_a_peer_gone_from_the_desired_map_is_removed() -> None:
    actual = {key(1): state("100.64.0.2/32"), key(2): state("100.64.0.3/32")}
    desired = {"p1": peer("p1", 1, "100.64.0.2")}
    assert plan(desired, actual) == [RemovePeer(key(2))]


def test_a_peer_going_offline_stays_configured_with_its_last_endpoint() -> None:
    actual = {key(1): state("100.64.0.2/32", endpoint="198.51.100.7:51820")}
    desired = {"p1": peer("p1", 1, "100.64.0.2", None, online=False)}
    assert plan(desired, actual) == []


def test_a_new_endpoint_updates_only_the_endpoint() -> None:
    actual = {key(1): state("100.64.0.2/32", endpoint="198.51.100.7:51820")}
    desired = {"p1": peer("p1", 1, "100.64.0.2", "203.0.113.9:4500")}
    assert plan(desired, actual) == [UpdatePeer(key(1), None, "203.0.113.9:4500")]


def test_a_new_virtual_ip_updates_only_the_allowed_ips() -> None:
    actual = {key(1): state("100.64.0.2/32", endpoint="198.51.100.7:51820")}
    desired = {"p1": peer("p1", 1, "100.64.0.9", "198.51.100.7:51820")}
    assert plan(desired, actual) == [UpdatePeer(key(1), frozenset({"100.64.0.9/32"}), None)]


def test_extra_allowed_ips_configured_by_hand_are_brought_back_to_the_host_route() -> None:
    actual = {key(1): state("100.64.0.2/32", "10.0.0.0/8")}
    desired = {"p1": peer("p1", 1, "100.64.0.2")}
    assert plan(desired, actual) == [UpdatePeer(key(1), frozenset({"100.64.0.2/32"}), None)]


def test_a_rotated_key_is_a_removal_and_an_addition() -> None:
    actual = {key(1): state("100.64.0.2/32")}
    desired = {"p1": peer("p1", 2, "100.64.0.2")}
    assert plan(desired, actual) == [
        RemovePeer(key(1)),
        AddPeer(key(2), frozenset({"100.64.0.2/32"}), None),
    ]


def test_two_peers_with_one_key_resolve_to_the_lowest_peer_id_in_any_order() -> None:
    first = peer("p-a", 1, "100.64.0.2")
    second = peer("p-b", 1, "100.64.0.3")
    expected = [AddPeer(key(1), frozenset({"100.64.0.2/32"}), None)]
    assert plan({"p-a": first, "p-b": second}, {}) == expected
    assert plan({"p-b": second, "p-a": first}, {}) == expected


def test_removals_come_before_updates_before_additions() -> None:
    actual = {key(1): state("100.64.0.2/32"), key(9): state("100.64.0.3/32")}
    desired = {
        "new": peer("new", 0, "100.64.0.3"),  # takes the address of the removed peer
        "moved": peer("moved", 1, "100.64.0.4"),
    }
    changes = plan(desired, actual)
    assert [type(change) for change in changes] == [RemovePeer, UpdatePeer, AddPeer]


# --- properties --------------------------------------------------------------------------

KEYS = st.integers(min_value=0, max_value=5)
IPS = st.sampled_from(["100.64.0.2", "100.64.0.3", "100.64.0.4", "fd00::2"])
ENDPOINTS = st.none() | st.sampled_from(["198.51.100.1:51820", "203.0.113.5:4500"])


@st.composite
def desired_peers(draw: st.DrawFn) -> dict[str, Peer]:
    ids = draw(st.lists(st.sampled_from([f"p{i}" for i in range(6)]), unique=True, max_size=6))
    return {
        peer_id: peer(
            peer_id,
            draw(st.none() | KEYS),
            draw(IPS),
            draw(ENDPOINTS),
            online=draw(st.booleans()),
        )
        for peer_id in ids
    }


ACTUAL = st.dictionaries(
    KEYS.map(key),
    st.builds(
        PeerState,
        st.frozensets(st.sampled_from(["100.64.0.2/32", "100.64.0.5/32", "10.0.0.0/8"])),
        ENDPOINTS,
    ),
    max_size=6,
)


def expected_table(desired: dict[str, Peer], actual: dict[str, PeerState]) -> dict[str, PeerState]:
    """The rules restated independently: one entry per key, the lowest peer_id wins, an
    unknown endpoint keeps the configured one."""
    table: dict[str, PeerState] = {}
    for peer_id in sorted(desired):
        wanted = desired[peer_id]
        if wanted.public_key is None or wanted.public_key in table:
            continue
        kept = actual[wanted.public_key].endpoint if wanted.public_key in actual else None
        prefix = 128 if ":" in wanted.virtual_ip else 32
        table[wanted.public_key] = PeerState(
            frozenset({f"{wanted.virtual_ip}/{prefix}"}), wanted.endpoint or kept
        )
    return table


@given(desired_peers(), ACTUAL)
def test_applying_the_plan_yields_exactly_the_desired_table(
    desired: dict[str, Peer], actual: dict[str, PeerState]
) -> None:
    result = apply_changes(actual, plan(desired, actual))
    assert result == expected_table(desired, actual)


@given(desired_peers(), ACTUAL)
def test_a_reconciled_table_needs_no_change(
    desired: dict[str, Peer], actual: dict[str, PeerState]
) -> None:
    result = apply_changes(actual, plan(desired, actual))
    assert plan(desired, result) == []


@given(desired_peers(), ACTUAL)
def test_every_key_is_touched_at_most_once_and_kept_keys_are_never_removed(
    desired: dict[str, Peer], actual: dict[str, PeerState]
) -> None:
    changes = plan(desired, actual)
    touched = [change.public_key for change in changes]
    assert len(touched) == len(set(touched))
    wanted = {p.public_key for p in desired.values() if p.public_key is not None}
    for change in changes:
        if isinstance(change, RemovePeer):
            assert change.public_key not in wanted
        if isinstance(change, UpdatePeer):
            assert change.allowed_ips is not None or change.endpoint is not None
            assert change.public_key in actual
        if isinstance(change, AddPeer):
            assert change.public_key not in actual
