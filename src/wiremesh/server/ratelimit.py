"""Failed authentications per client address: a token bucket each, in memory per replica.

Every kind of failed authentication (an API token, a device credential on HTTP or on the
agent WebSocket, a setup key, an invitation token, a relay token) takes a token from the
client's bucket; an empty bucket refuses the client's next attempts, before any credential
is looked at, with 429 and ``Retry-After`` (WebSocket: close 4007) until a token is back.
Secrets are long and random, so this is not what keeps them from being guessed: it bounds
what a client that keeps failing costs (database lookups, log lines).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from wiremesh.server import forwarded
from wiremesh.server.config import Settings
from wiremesh.server.errors import error_body

logger = logging.getLogger("wiremesh.auth")

MAX_CLIENTS = 100_000
"""Buckets kept at most; the least recently charged go first (a full bucket is no bucket)."""
THROTTLED_PREFIX = "/api/v1/"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per key: ``burst`` tokens, refilled at ``per_second``."""

    def __init__(
        self,
        burst: int,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_CLIENTS,
    ) -> None:
        if burst < 1 or per_second <= 0:
            raise ValueError("a bucket needs at least one token and a positive refill rate")
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _tokens(self, bucket: _Bucket, now: float) -> float:
        return min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_second)

    def retry_after(self, key: str) -> float | None:
        """None while ``key`` has a token; else the seconds until it has one again."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        tokens = self._tokens(bucket, self._clock())
        if tokens >= 1:
            return None
        return (1 - tokens) / self.per_second

    def take(self, key: str) -> None:
        """Spend one of ``key``'s tokens (none left: stays empty)."""
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        tokens = self.burst if bucket is None else self._tokens(bucket, now)
        self._buckets[key] = _Bucket(tokens=max(0.0, tokens - 1), updated=now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


class AuthThrottle:
    """The failed-authentication buckets of this replica, keyed by client address."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.buckets = TokenBuckets(
            settings.auth_failure_burst, settings.auth_failure_per_minute / 60, clock=clock
        )

    def client(self, scope: Scope) -> str:
        """The client's address as the rest of the server sees it (trusted proxies applied)."""
        peer = scope.get("client")
        header = self.settings.forwarded_header.encode()
        lines = [value.decode("latin-1") for name, value in scope["headers"] if name == header]
        address = forwarded.client_address(
            peer[0] if peer else None,
            lines,
            self.settings.trusted_proxy_networks,
            self.settings.forwarded_header,
        )
        return address or "unknown"

    def retry_after(self, scope: Scope) -> int | None:
        """Whole seconds this client must wait before it may authenticate again, or None."""
        wait = self.buckets.retry_after(self.client(scope))
        return None if wait is None else max(1, math.ceil(wait))

    def failed(self, scope: Scope, code: str) -> None:
        """Count a failed authentication; logged without the credential."""
        client = self.client(scope)
        self.buckets.take(client)
        logger.warning(
            "failed authentication from %s: %s %s (%s)",
            client,
            scope.get("method", "WEBSOCKET"),
            scope.get("path", ""),
            code,
        )


def too_many_failures(retry_after: int) -> str:
    return f"too many failed authentications from this address; retry in {retry_after} s"


class AuthThrottleMiddleware:
    """429 ``too_many_failures`` with ``Retry-After`` for API requests from a client whose
    bucket is empty: before the body is read, before any credential is checked."""

    def __init__(self, app: ASGIApp, throttle: AuthThrottle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(THROTTLED_PREFIX):
            wait = self.throttle.retry_after(scope)
            if wait is not None:
                body = json.dumps(error_body("too_many_failures", too_many_failures(wait)))
                await send(
                    {
                        "type": "http.response.start",
                        "status": 429,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(wait).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)
