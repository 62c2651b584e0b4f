"""The machine's own addresses, announced as ``lan`` candidates."""

from __future__ import annotations

import ipaddress
import sys

import pytest

from wiremesh.agent.lan import lan_candidates, own_addresses

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_own_addresses_are_usable_ipv4_addresses() -> None:
    for text in own_addresses():
        address = ipaddress.IPv4Address(text)
        assert not address.is_loopback
        assert not address.is_link_local


def test_the_overlay_network_is_left_out() -> None:
    everything = own_addresses()
    if not everything:
        pytest.skip("this machine has no address but loopback")
    first = everything[0]
    assert first not in own_addresses(f"{first}/32")


def test_candidates_carry_the_listen_port_and_need_one() -> None:
    assert lan_candidates(0) == []
    assert lan_candidates(51820) == [f"{address}:51820" for address in own_addresses()]
