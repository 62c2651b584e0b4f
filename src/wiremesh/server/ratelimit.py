"""Failed authentications per client address: a token bucket each, in memory per replica.

Every kind of failed authentication (an API token, a device credential on HTTP or on the
agent WebSocket, a setup key, an invitation token, a relay token) takes a token from the
client's bucket; once it is empty, the client's next failures are answered 429 with
``Retry-After`` (WebSocket: close 4007) instead of the refusal, until a token is back.
A credential that verifies always passes: the limit never locks out the good clients that
share an address (a NAT, a proxy) with a failing one. Secrets are long and random, so this
is not what keeps them from being guessed: it slows a client that keeps failing and tells
it so.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wiremesh.server import forwarded
from wiremesh.server.config import Settings
from wiremesh.server.errors import ApiError

logger = logging.getLogger("wiremesh.auth")

MAX_CLIENTS = 100_000
"""Buckets kept at most; the least recently charged go first (a full bucket is no bucket)."""


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

    def client(self, scope: Mapping[str, Any]) -> str:
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

    def failed(self, scope: Mapping[str, Any], code: str) -> int | None:
        """Count a failed authentication, logged without the credential; the whole seconds
        the client must wait when its budget was already spent (answer 429 / close 4007
        then), else ``None`` (answer the refusal itself).

        Only failures are ever refused: a credential that verifies passes whatever its
        address did, so one bad client behind a shared NAT or proxy locks out nobody else.
        A client without an address (no peer in the scope) is not counted.
        """
        client = self.client(scope)
        logger.warning(
            "failed authentication from %s: %s %s (%s)",
            client,
            scope.get("method", "WEBSOCKET"),
            scope.get("path", ""),
            code,
        )
        if client == "unknown":
            return None
        wait = self.buckets.retry_after(client)
        if wait is not None:
            return max(1, math.ceil(wait))
        self.buckets.take(client)
        return None


def too_many_failures(retry_after: int) -> str:
    return f"too many failed authentications from this address; retry in {retry_after} s"


class OrgBudget:
    """A per-organization budget for what an admin may do often but an attacker with an
    admin's token would do in bulk (mails to strangers): spent by every attempt, answered
    429 with ``Retry-After`` once empty."""

    def __init__(self, burst: int, per_second: float, *, code: str, too_many: str) -> None:
        self.buckets = TokenBuckets(burst, per_second)
        self.code = code
        self.too_many = too_many

    def charge(self, org_id: int) -> None:
        key = str(org_id)
        wait = self.buckets.retry_after(key)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                self.code,
                f"this organization {self.too_many}; retry in {seconds} s",
                retry_after=seconds,
            )
        self.buckets.take(key)
