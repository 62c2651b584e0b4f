"""What the running server holds for its lifetime, built by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wiremesh.server.config import Settings

if TYPE_CHECKING:
    from wiremesh.server.events.broadcast import EventBroadcast
    from wiremesh.server.events.feed import EventFeed
    from wiremesh.server.metrics.exposition import MetricsExporter
    from wiremesh.server.presence.hub import PresenceHub
    from wiremesh.server.ratelimit import AuthThrottle, OrgBudget, TokenBuckets


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    hub: PresenceHub
    feed: EventFeed | None = None
    auth_throttle: AuthThrottle | None = None
    test_mail_budget: TokenBuckets | None = None  # per org; made by mail.api on first use
    metrics: MetricsExporter | None = None
    invitation_budget: OrgBudget | None = None
    broadcast: EventBroadcast | None = None  # wakes the dashboard's live pages
