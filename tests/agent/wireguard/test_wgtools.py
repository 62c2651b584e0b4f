"""Command lines for `wg`/`ip` and the parsers of their output, from sample output alone."""

from __future__ import annotations

import json

import pytest

from wiremesh.agent.backend import AddPeer, RemovePeer, UpdatePeer
from wiremesh.agent.wireguard.wgtools import (
    DumpError,
    PeerDump,
    ip_link_mtu,
    link_kind,
    parse_dump,
    validate_interface_name,
    wg_set_device,
    wg_set_peers,
)

PRIVATE = "sP/Wn33a7FVXyBLXN4lWO4isb9X8U/pYeXOT83lLl2w="
PUBLIC = "dbMpmTF9oyKHydvYvOB9qvXVYY57wU8hpKrYqhql4kQ="
PEER_A = "7VFTTd2fH3GtPMHy8z+YoF5u8z6cMHSogxRIxHAWlW8="
PEER_B = "eT+A4OhxBDj5RIfYAm23nJT75fI4wDh/y/g3y9WaS3Y="
PEER_C = "aXK0zP6yq3bM8mKk4C2kVf2c1UuY9ZL0t8sVtN3c5mE="

# `wg show wm0 dump` of an interface with three peers (captured from wireguard-go).
SAMPLE_DUMP = (
    f"{PRIVATE}\t{PUBLIC}\t51820\toff\n"
    f"{PEER_A}\t(none)\t198.18.0.12:51820\t100.64.0.2/32\t1764159609\t1324\t1500\t25\n"
    f"{PEER_B}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
    f"{PEER_C}\t(none)\t[2001:db8::7]:4500\t100.64.0.4/32,fd00::4/128\t0\t0\t148\t25\n"
)


def test_the_dump_parser_reads_the_interface_and_every_peer() -> None:
    dump = parse_dump(SAMPLE_DUMP)
    assert dump.public_key == PUBLIC
    assert dump.listen_port == 51820
    assert dump.peers == {
        PEER_A: PeerDump(
            PEER_A, "198.18.0.12:51820", frozenset({"100.64.0.2/32"}), 1764159609, 1324, 1500, 25
        ),
        PEER_B: PeerDump(PEER_B, None, frozenset(), 0, 0, 0, None),
        PEER_C: PeerDump(
            PEER_C,
            "[2001:db8::7]:4500",
            frozenset({"100.64.0.4/32", "fd00::4/128"}),
            0,
            0,
            148,
            25,
        ),
    }


def test_the_dump_parser_drops_the_private_key() -> None:
    dump = parse_dump(SAMPLE_DUMP)
    assert PRIVATE not in repr(dump)


def test_an_interface_without_peers_or_key() -> None:
    dump = parse_dump("(none)\t(none)\t0\toff\n")
    assert dump.public_key is None
    assert dump.listen_port == 0
    assert dump.peers == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty output"),
        (f"{PRIVATE}\t{PUBLIC}\t51820\n", "line 1: expected 4 fields"),
        (f"{PRIVATE}\t{PUBLIC}\tport\toff\n", "line 1: the listen port is not a number"),
        (f"{PRIVATE}\t{PUBLIC}\t1\toff\n{PEER_A}\t(none)\n", "line 2: expected 8 fields"),
        (
            f"{PRIVATE}\t{PUBLIC}\t1\toff\nnot-a-key\t(none)\t(none)\t(none)\t0\t0\t0\toff\n",
            "line 2: the peer's public key is not a key",
        ),
        (
            f"{PRIVATE}\t{PUBLIC}\t1\toff\n{PEER_A}\t(none)\t(none)\t(none)\t0\t-1\t0\toff\n",
            "line 2: transfer-rx is negative",
        ),
    ],
)
def test_malformed_dumps_are_refused_without_quoting_the_private_key(
    text: str, message: str
) -> None:
    with pytest.raises(DumpError, match=message) as caught:
        parse_dump(text)
    assert PRIVATE not in str(caught.value)


def test_the_device_command_reads_the_private_key_from_stdin() -> None:
    assert wg_set_device("wm0", private_key=True, listen_port=51820) == [
        "wg", "set", "wm0", "private-key", "/dev/stdin", "listen-port", "51820",
    ]  # fmt: skip
    assert wg_set_device("wm0", private_key=False, listen_port=0) == [
        "wg", "set", "wm0", "listen-port", "0",
    ]  # fmt: skip
    assert wg_set_device("wm0", private_key=True, listen_port=None) == [
        "wg", "set", "wm0", "private-key", "/dev/stdin",
    ]  # fmt: skip


def test_one_wg_set_for_a_whole_plan_touching_only_the_peers_named() -> None:
    argv = wg_set_peers(
        "wm0",
        [
            RemovePeer(PEER_C),
            UpdatePeer(PEER_B, endpoint="198.18.0.13:51820"),
            UpdatePeer(PEER_B, allowed_ips=frozenset({"100.64.0.9/32"})),
            AddPeer(PEER_A, frozenset({"100.64.0.2/32", "fd00::2/128"}), "198.18.0.12:51820"),
            AddPeer(PEER_C, frozenset({"100.64.0.4/32"})),
        ],
    )
    assert argv == [
        "wg", "set", "wm0",
        "peer", PEER_C, "remove",
        "peer", PEER_B, "allowed-ips", "100.64.0.9/32",
        "peer", PEER_C, "allowed-ips", "100.64.0.4/32",
        # last: the changes that turn a keepalive on (see the next tests)
        "peer", PEER_B, "endpoint", "198.18.0.13:51820", "persistent-keepalive", "25",
        "peer", PEER_A, "allowed-ips", "100.64.0.2/32,fd00::2/128",
        "endpoint", "198.18.0.12:51820", "persistent-keepalive", "25",
    ]  # fmt: skip


def test_no_peer_without_an_endpoint_follows_one_whose_keepalive_turns_on() -> None:
    """wireguard-go carries "keepalive just turned on" to the later peers of one ``wg set``
    and tries, and fails, an immediate handshake with those that have no endpoint."""
    argv = wg_set_peers(
        "wm0",
        [
            RemovePeer(PEER_A),
            AddPeer(PEER_A, frozenset(), "198.18.0.12:51820"),
            AddPeer(PEER_B, frozenset({"100.64.0.3/32"})),
            UpdatePeer(PEER_C, allowed_ips=frozenset()),
        ],
    )
    peers = [argv[i + 1] for i, word in enumerate(argv) if word == "peer"]
    assert peers == [PEER_A, PEER_B, PEER_C, PEER_A]
    assert argv[argv.index(PEER_A) + 1] == "remove"
    assert argv[-2:] == ["persistent-keepalive", "25"]


def test_the_keepalive_is_configurable() -> None:
    argv = wg_set_peers(
        "wm0", [AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820")], keepalive=5
    )
    assert argv[-2:] == ["persistent-keepalive", "5"]


def test_the_keepalive_comes_with_the_endpoint_never_before() -> None:
    """WireGuard sends a keepalive as soon as it is turned on; without an endpoint that
    fails and no handshake follows for 5 s, so a peer without one gets no keepalive, and
    the update that brings its endpoint turns it on (a relay's keepalive 0 stays off)."""
    bare = wg_set_peers("wm0", [AddPeer(PEER_A, frozenset({"100.64.0.2/32"}))])
    assert "persistent-keepalive" not in bare
    found = wg_set_peers("wm0", [UpdatePeer(PEER_A, endpoint="198.18.0.12:51820")])
    assert found[-4:] == ["endpoint", "198.18.0.12:51820", "persistent-keepalive", "25"]
    routes_only = wg_set_peers("wm0", [UpdatePeer(PEER_A, allowed_ips=frozenset())])
    assert "persistent-keepalive" not in routes_only
    relay = wg_set_peers("wmr0", [UpdatePeer(PEER_A, endpoint="198.18.0.12:51820")], keepalive=0)
    assert "persistent-keepalive" not in relay


def test_ipv6_endpoints_are_accepted() -> None:
    argv = wg_set_peers("wm0", [UpdatePeer(PEER_A, endpoint="[2001:db8::1]:51820")])
    assert argv[-4:-2] == ["endpoint", "[2001:db8::1]:51820"]


@pytest.mark.parametrize(
    "change",
    [
        RemovePeer("remove"),
        AddPeer(PEER_A, frozenset({"100.64.0.2/24"})),  # host bits set
        AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "host.example:51820"),
        AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.1:0"),
        AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "2001:db8::1:51820"),
        UpdatePeer(PEER_A, endpoint="[198.18.0.1]:51820"),
        UpdatePeer(PEER_A, endpoint="198.18.0.1:51820 remove"),
    ],
)
def test_anything_odd_is_refused_before_reaching_wg(
    change: AddPeer | UpdatePeer | RemovePeer,
) -> None:
    with pytest.raises(ValueError, match="not"):
        wg_set_peers("wm0", [change])


@pytest.mark.parametrize("name", ["wm0", "wg-mesh_1", "a", "x" * 15, "eth0.100"])
def test_usable_interface_names(name: str) -> None:
    assert validate_interface_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 16, "-wm0", ".wm0", "wm 0", "wm/0", "wm0:1", "wm0\n"])
def test_unusable_interface_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a usable interface name"):
        validate_interface_name(name)


def _link(kind: str | None) -> str:
    entry: dict[str, object] = {"ifindex": 7, "ifname": "wm0", "flags": ["POINTOPOINT"]}
    if kind is not None:
        entry["linkinfo"] = {"info_kind": kind, "info_data": {}}
    return json.dumps([entry])


def test_link_kind_of_kernel_userspace_and_plain_links() -> None:
    assert link_kind(_link("wireguard")) == "wireguard"
    assert link_kind(_link("tun")) == "tun"
    assert link_kind(_link(None)) == ""


@pytest.mark.parametrize("text", ["", "not json", "[]", "{}", "[1]"])
def test_link_kind_refuses_what_ip_does_not_print(text: str) -> None:
    with pytest.raises(DumpError):
        link_kind(text)


def test_the_mtu_command_takes_only_a_usable_mtu() -> None:
    assert ip_link_mtu("wm0", 1280) == ["ip", "link", "set", "dev", "wm0", "mtu", "1280"]
    assert ip_link_mtu("wm0", 9000)[-1] == "9000"
    for wrong in (1279, 9001, 0):
        with pytest.raises(ValueError, match=str(wrong)):
            ip_link_mtu("wm0", wrong)
    with pytest.raises(ValueError, match="interface name"):
        ip_link_mtu("-wm0", 1420)
