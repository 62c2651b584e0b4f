"""The public IP recorded for a session: X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.websockets import WebSocket

from wiremesh.server.config import Settings
from wiremesh.server.presence.gateway import client_address


def _websocket(peer: str, forwarded: str | None = None) -> WebSocket:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": "/api/v1/agent/ws",
        "headers": headers,
        "client": (peer, 40000),
    }

    async def receive() -> dict[str, Any]:
        raise AssertionError("not used")

    async def send(_message: dict[str, Any]) -> None:
        raise AssertionError("not used")

    return WebSocket(scope, receive, send)


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        ([], "198.18.0.9", "203.0.113.7", "198.18.0.9"),
        (["198.18.0.0/24"], "198.18.0.9", "203.0.113.7", "203.0.113.7"),
        (["198.18.0.0/24"], "198.19.5.5", "203.0.113.7", "198.19.5.5"),
        (["198.18.0.0/24"], "198.18.0.9", "1.2.3.4, 203.0.113.7, 198.18.0.2", "203.0.113.7"),
        (["198.18.0.0/24"], "198.18.0.9", None, "198.18.0.9"),
        (["198.18.0.0/24"], "198.18.0.9", "not-an-ip", "198.18.0.9"),
        (["198.18.0.0/24"], "198.18.0.9", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_forwarded_address_is_believed_only_from_trusted_proxies(
    trusted: list[str], peer: str, forwarded: str | None, expected: str, tmp_path: Any
) -> None:
    settings = Settings(data_dir=tmp_path, trusted_proxies=trusted)
    assert client_address(_websocket(peer, forwarded), settings) == expected
