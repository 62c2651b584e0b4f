"""The agent's HTTP client: URLs under a server's base URL."""

from __future__ import annotations

import pytest

from wiremesh.agent.api import websocket_url
from wiremesh.agent.servers import normalize_server_url


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/api/v1/agent/ws"),
        ("https://vpn.example.com/wiremesh/", "wss://vpn.example.com/wiremesh/api/v1/agent/ws"),
    ],
)
def test_the_websocket_url_follows_the_server_url(server: str, expected: str) -> None:
    assert websocket_url(normalize_server_url(server)) == expected
