"""Org networks: parsing what people type, and carving free blocks from the pool."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiremesh.server.errors import Invalid
from wiremesh.server.orgs.service import first_free_network, parse_network

POOL = ipaddress.IPv4Network("100.64.0.0/10")


def nets(*cidrs: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(cidr) for cidr in cidrs]


def test_empty_pool_gives_its_first_block() -> None:
    assert first_free_network(POOL, 20, []) == ipaddress.IPv4Network("100.64.0.0/20")


def test_taken_blocks_are_skipped_in_order() -> None:
    taken = nets("100.64.0.0/20", "100.64.16.0/20")
    assert first_free_network(POOL, 20, taken) == ipaddress.IPv4Network("100.64.32.0/20")


def test_a_gap_between_taken_blocks_is_reused() -> None:
    taken = nets("100.64.0.0/20", "100.64.32.0/20")
    assert first_free_network(POOL, 20, taken) == ipaddress.IPv4Network("100.64.16.0/20")


def test_a_small_network_blocks_the_whole_block_it_sits_in() -> None:
    taken = nets("100.64.5.0/24")
    assert first_free_network(POOL, 20, taken) == ipaddress.IPv4Network("100.64.16.0/20")


def test_a_large_network_is_jumped_over_to_an_aligned_block() -> None:
    taken = nets("100.64.0.0/12", "100.80.0.0/24")
    assert first_free_network(POOL, 20, taken) == ipaddress.IPv4Network("100.80.16.0/20")


def test_networks_outside_the_pool_do_not_matter() -> None:
    assert first_free_network(POOL, 20, nets("10.0.0.0/8")) == ipaddress.IPv4Network(
        "100.64.0.0/20"
    )


def test_a_full_pool_gives_none() -> None:
    small = ipaddress.IPv4Network("100.64.0.0/23")
    assert first_free_network(small, 24, nets("100.64.0.0/24", "100.64.1.0/24")) is None
    assert first_free_network(small, 24, nets("100.64.0.0/22")) is None


def test_a_block_larger_than_the_pool_gives_none() -> None:
    assert first_free_network(POOL, 8, []) is None


@given(
    prefix=st.integers(min_value=16, max_value=24),
    taken=st.lists(
        st.tuples(st.integers(min_value=0, max_value=(1 << 22) - 1), st.integers(12, 30)),
        max_size=12,
    ),
)
def test_the_block_found_is_free_aligned_and_in_the_pool(
    prefix: int, taken: list[tuple[int, int]]
) -> None:
    existing = [
        ipaddress.IPv4Network((int(POOL.network_address) + offset, length), strict=False)
        for offset, length in taken
    ]
    found = first_free_network(POOL, prefix, existing)
    if found is None:
        size = 1 << (32 - prefix)
        blocks = (int(POOL.network_address) + i * size for i in range(POOL.num_addresses // size))
        assert all(
            any(ipaddress.IPv4Network((start, prefix)).overlaps(net) for net in existing)
            for start in blocks
        )
        return
    assert found.prefixlen == prefix
    assert found.subnet_of(POOL)
    assert not any(found.overlaps(net) for net in existing)
    lower = [
        ipaddress.IPv4Network((int(found.network_address) - step * (1 << (32 - prefix)), prefix))
        for step in range(1, 4)
        if int(found.network_address) - step * (1 << (32 - prefix)) >= int(POOL.network_address)
    ]
    assert all(any(block.overlaps(net) for net in existing) for block in lower)


def test_a_valid_network_is_accepted() -> None:
    assert parse_network(" 100.64.16.0/20 ", str(POOL)) == ipaddress.IPv4Network("100.64.16.0/20")


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [
        ("banana", "invalid_network", "not an IPv4 network"),
        ("100.64.16.1/20", "invalid_network", "did you mean 100.64.16.0/20"),
        ("fd00::/64", "invalid_network", "not an IPv4 network"),
        ("100.64.0.0/31", "invalid_network", "between /8 and /30"),
        ("100.64.0.4", "invalid_network", "between /8 and /30"),
        ("100.0.0.0/8", "network_outside_pool", "not inside"),
        ("192.168.0.0/24", "network_outside_pool", "not inside"),
    ],
)
def test_bad_networks_are_refused_with_a_reason(value: str, code: str, words: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_network(value, str(POOL))
    assert info.value.code == code
    assert words in info.value.message
