"""The agent's one HTTP client: server URLs, the first server that answers, error lines.

Enrollment (:mod:`wiremesh.agent.enroll`) and key rotation
(:mod:`wiremesh.agent.wireguard.rotate`) ask the same servers the same way, and the
session loop connects to the WebSocket under the same base URLs (``websocket_url`` and
``USER_AGENT`` live in :mod:`.servers`, so the session loop does not load httpx); the paths
come from :mod:`wiremesh.protocol.urls`, shared with the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import httpx

from wiremesh.agent.servers import USER_AGENT, websocket_url

__all__ = [
    "REQUEST_TIMEOUT",
    "USER_AGENT",
    "NoServerAnswered",
    "first_answer",
    "server_error",
    "websocket_url",
]

logger = logging.getLogger("wiremesh.agent")

REQUEST_TIMEOUT: Final = 15.0


def server_error(response: httpx.Response) -> str:
    """The server's ``{"error": {"code", "message"}}`` as one line, or what we got instead."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"{error['message']} ({error.get('code', 'error')})"
    return f"unexpected HTTP {response.status_code} response; is this a wiremesh server?"


class NoServerAnswered(Exception):
    """No server answered: each was unreachable or failed (5xx); one line per server."""

    def __init__(self, failures: Sequence[str]) -> None:
        super().__init__(*failures)
        self.failures = tuple(failures)

    def __str__(self) -> str:
        if len(self.failures) == 1:
            return self.failures[0]
        return "no server answered: " + "; ".join(self.failures)


async def first_answer(
    server_urls: Sequence[str],
    send: Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[str, httpx.Response]:
    """``send(client, server_url)`` to each server in order; who answered first, and how.

    An unreachable server (connection refused, TLS error, timeout) or one that failed
    (5xx: a replica going down, a load balancer without a backend) is skipped. Any other
    response is the deployment's answer, a refusal included: every replica shares one
    database, so asking the next one would only repeat it. Raises
    :class:`NoServerAnswered` when every server was skipped.
    """
    failures: list[str] = []
    async with httpx.AsyncClient(
        transport=transport, timeout=REQUEST_TIMEOUT, headers={"User-Agent": USER_AGENT}
    ) as client:
        for number, server_url in enumerate(server_urls):
            try:
                response = await send(client, server_url)
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
                failures.append(f"cannot reach the server at {server_url}: {reason}")
            else:
                if response.status_code < 500:
                    return server_url, response
                failures.append(
                    f"the server at {server_url} failed with HTTP {response.status_code}"
                )
            if number + 1 < len(server_urls):
                logger.warning("%s; trying %s", failures[-1], server_urls[number + 1])
    raise NoServerAnswered(failures)
