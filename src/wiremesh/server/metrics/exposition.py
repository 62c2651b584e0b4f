"""What a scrape returns, and who may scrape: the token compared in constant time."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wiremesh.server.metrics.collectors import OutboxCollector, PoolCollector, PresenceCollector
from wiremesh.server.metrics.recorder import ServerMetrics
from wiremesh.server.presence.hub import PresenceHub

CONTENT_TYPE = CONTENT_TYPE_LATEST


class MetricsExporter:
    """The replica's registry with the scrape-time collectors added."""

    def __init__(
        self,
        metrics: ServerMetrics,
        hub: PresenceHub,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self.registry = metrics.registry
        self.outbox = OutboxCollector(sessionmaker, metrics.server_id)
        self._collectors = [
            PresenceCollector(hub),
            PoolCollector(engine, metrics.server_id),
            self.outbox,
        ]
        for collector in self._collectors:
            self.registry.register(collector)

    def close(self) -> None:
        for collector in self._collectors:
            self.registry.unregister(collector)

    async def scrape(self) -> bytes:
        await self.outbox.refresh()
        return generate_latest(self.registry)


def authorized(token: SecretStr | None, authorization: str | None) -> bool:
    """No token configured: anyone who reaches the listener. Else ``Bearer <token>``."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )
