"""The relay's check-in, against a scripted server."""

from __future__ import annotations

import httpx

from tests.protocol.helpers import wg_key
from wiremesh.agent.backend import PeerState
from wiremesh.protocol import Relay
from wiremesh.relay.runner import RelayRunner


class _Interface:
    async def peers(self) -> dict[str, PeerState]:
        return {}


async def test_a_connection_closed_under_a_request_is_retried_at_once() -> None:
    """A kept-alive connection the server closes as the request goes out is no missed
    check-in: the request goes again on a new connection."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"version": 3})

    identity = Relay(name="r1", public_key=wg_key(1), endpoint="198.18.0.30:3478")
    runner = RelayRunner("http://198.18.0.1:8080", "token", identity, _Interface())  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await runner.sync_once(client)
    assert len(calls) == 2
