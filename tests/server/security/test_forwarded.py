"""The client address behind trusted proxies, over every header line (issue #12: only the
first ``X-Forwarded-For`` line was read, so a client that sent its own line before the
proxy's was recorded with the address it chose)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocket

from wiremesh.server.config import Settings
from wiremesh.server.forwarded import client_address, forwarded_hops, parse_address
from wiremesh.server.presence.gateway import client_address as gateway_client_address

PROXIES = [ipaddress.ip_network("198.18.0.0/24"), ipaddress.ip_network("2001:db8:ff::/48")]


def _websocket(peer: str, headers: list[tuple[str, str]]) -> WebSocket:
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": "/api/v1/agent/ws",
        "headers": [(name.encode(), value.encode()) for name, value in headers],
        "client": (peer, 40000),
    }

    async def receive() -> dict[str, Any]:
        raise AssertionError("not used")

    async def send(_message: dict[str, Any]) -> None:
        raise AssertionError("not used")

    return WebSocket(scope, receive, send)


def test_a_line_the_client_sent_before_the_proxys_is_not_believed(tmp_path: Path) -> None:
    """The proxy appended its own line; the client's forged one came first."""
    settings = Settings(data_dir=tmp_path, trusted_proxies=["198.18.0.0/24"])
    websocket = _websocket(
        "198.18.0.9",
        [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.7")],
    )
    assert gateway_client_address(websocket, settings) == "203.0.113.7"


def test_the_rfc7239_header_when_configured(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, trusted_proxies=["198.18.0.0/24"], forwarded_header="forwarded"
    )
    websocket = _websocket(
        "198.18.0.9",
        [
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),  # not the configured header: ignored
            ("forwarded", 'for="203.0.113.7:4711";proto=https, for=198.18.0.3'),
        ],
    )
    assert gateway_client_address(websocket, settings) == "203.0.113.7"


@pytest.mark.parametrize(
    ("peer", "lines", "expected"),
    [
        ("203.0.113.1", ["1.2.3.4"], "203.0.113.1"),  # untrusted peer: its header is ignored
        ("198.18.0.9", [], "198.18.0.9"),
        ("198.18.0.9", ["203.0.113.7"], "203.0.113.7"),
        ("198.18.0.9", ["1.2.3.4, 203.0.113.7, 198.18.0.2"], "203.0.113.7"),
        ("198.18.0.9", ["1.2.3.4", "203.0.113.7, 198.18.0.2"], "203.0.113.7"),
        ("198.18.0.9", ["1.2.3.4, 203.0.113.7", "198.18.0.2"], "203.0.113.7"),
        ("198.18.0.9", ["198.18.0.5, 198.18.0.2"], "198.18.0.5"),  # all trusted: leftmost
        ("198.18.0.9", ["not-an-ip"], "198.18.0.9"),
        ("198.18.0.9", ["1.2.3.4, garbage, 198.18.0.2"], "198.18.0.2"),
        ("198.18.0.9", ["2001:db8::5"], "2001:db8::5"),
        ("198.18.0.9", ["203.0.113.7:51820"], "203.0.113.7"),
        ("198.18.0.9", ["[2001:db8::5]:443"], "2001:db8::5"),
        ("::ffff:198.18.0.9", ["203.0.113.7"], "203.0.113.7"),  # a mapped proxy address
        ("2001:db8:ff::1", ["203.0.113.7"], "203.0.113.7"),
        ("testclient", ["203.0.113.7"], "testclient"),
    ],
)
def test_x_forwarded_for_is_walked_right_to_left_over_all_lines(
    peer: str, lines: list[str], expected: str
) -> None:
    assert client_address(peer, lines, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("198.18.0.9", ["203.0.113.7"], []) == "198.18.0.9"
    assert client_address(None, ["203.0.113.7"], PROXIES) is None


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["for=203.0.113.7"], "203.0.113.7"),
        (['for="[2001:db8::17]:4711"'], "2001:db8::17"),
        (["for=6.6.6.6", "for=203.0.113.7;by=198.18.0.9"], "203.0.113.7"),
        (["for=6.6.6.6, for=203.0.113.7;proto=https"], "203.0.113.7"),
        (['for=6.6.6.6, for="203.0.113.7";host="a,b;c"'], "203.0.113.7"),
        (["for=unknown"], "198.18.0.9"),
        (["for=_hidden, for=198.18.0.3"], "198.18.0.3"),
        (["proto=https"], "198.18.0.9"),  # an element without for= ends the walk
        (["FOR=203.0.113.7"], "203.0.113.7"),
    ],
)
def test_rfc7239_forwarded(lines: list[str], expected: str) -> None:
    assert client_address("198.18.0.9", lines, PROXIES, "forwarded") == expected


def test_hops_and_addresses_parse_as_proxies_write_them() -> None:
    assert forwarded_hops(["a, b", " c "], "x-forwarded-for") == ["a", "b", "c"]
    assert forwarded_hops(['for=a;by=b, by=c, for="d"'], "forwarded") == ["a", "", '"d"']
    assert parse_address("[2001:db8::1") is None
    assert parse_address("[2001:db8::1]x") is None
    assert parse_address("1.2.3.4:80") == ipaddress.ip_address("1.2.3.4")
    assert parse_address("") is None
