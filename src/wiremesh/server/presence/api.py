"""The monitoring API: who is online, who is at risk, a device's history, cleanup.

The agent WebSocket itself is served by :class:`wiremesh.server.app.WiremeshApp`."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from wiremesh.server.auth.deps import DbSession, ServerAdmin, State
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices import service as devices_service
from wiremesh.server.errors import Invalid
from wiremesh.server.orgs.deps import (
    IdPath,
    OrgIdPath,
    OrgMember,
    ScopeDependency,
    include_for_both_scopes,
    org_member_scope,
    server_scope_or_one_org,
)
from wiremesh.server.presence import monitoring
from wiremesh.server.presence.cleanup import delete_old_connections
from wiremesh.server.presence.models import ConnectionState
from wiremesh.server.presence.schemas import (
    CleanupReport,
    ConnectionOut,
    DeviceHistory,
    ServerStats,
    StaleAddress,
)
from wiremesh.server.state import AppState
from wiremesh.server.tenancy import TenantScope

# No router-wide body check: a WebSocket route has no HTTP request body to check, and the
# monitoring endpoints take none.
router = APIRouter()

Limit = Annotated[int, Query(ge=1, le=10_000, description="At most this many rows")]
Offset = Annotated[int, Query(ge=0, le=2_147_483_647)]
StatusFilter = Annotated[ConnectionState | None, Query(description="Only rows in this state")]
SilentSeconds = Annotated[
    float | None,
    Query(gt=0, le=86_400 * 365, description="No pong for longer than this; default 2 intervals"),
]
UnusedHours = Annotated[float, Query(gt=0, le=24 * 3650, description="Unused for this long")]


def _silence(state: AppState, seconds: float | None) -> timedelta:
    return timedelta(seconds=seconds or 2 * state.settings.heartbeat_interval)


@router.get(
    "/orgs/{org_id}/devices/{device_id}/history",
    tags=["monitoring"],
    summary="One device's sessions over a period: durations, how each ended, timeouts, flaps",
)
async def device_history(
    org_id: OrgIdPath,
    device_id: IdPath,
    _role: OrgMember,
    session: DbSession,
    since: Annotated[datetime | None, Query(description="Default: 7 days ago")] = None,
    until: Annotated[datetime | None, Query(description="Default: now")] = None,
    flap_window_seconds: Annotated[float, Query(gt=0, le=86_400)] = 60.0,
    limit: Limit = 1000,
) -> DeviceHistory:
    device = await devices_service.get_device(session, org_id, device_id)
    end = until or utcnow()
    start = since or end - timedelta(days=7)
    if start.tzinfo is None or end.tzinfo is None:
        raise Invalid("naive_datetime", "since and until need a time zone (e.g. Z or +00:00)")
    if start >= end:
        raise Invalid("invalid_period", "since must be before until")
    return await monitoring.device_history(
        session,
        device,
        since=start,
        until=end,
        flap_window=timedelta(seconds=flap_window_seconds),
        limit=limit,
    )


# --- the same for one org (its members) and for every org (server administrators) -------------


def _scoped_routes(scope_of: ScopeDependency) -> APIRouter:
    """The monitoring endpoints that differ only in scope, for one scope dependency."""
    scoped = APIRouter(tags=["monitoring"])

    @scoped.get(
        "/connections",
        summary=(
            "Connections of the org (of every org for a server administrator), most recent "
            "activity first (status=connected: who is online)"
        ),
    )
    async def connections(
        session: DbSession,
        scope: TenantScope = Depends(scope_of),
        status: StatusFilter = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> list[ConnectionOut]:
        return await monitoring.list_connections(
            session, scope, status=status, limit=limit, offset=offset
        )

    @scoped.get(
        "/connections/at-risk",
        summary="Live connections of the org (or every org) with no pong for longer than `seconds`",
    )
    async def at_risk(
        session: DbSession,
        state: State,
        scope: TenantScope = Depends(scope_of),
        seconds: SilentSeconds = None,
        limit: Limit = 100,
    ) -> list[ConnectionOut]:
        return await monitoring.at_risk(
            session, scope, silent_for=_silence(state, seconds), limit=limit
        )

    @scoped.get(
        "/ips/stale",
        summary="Virtual IPs of the org (or every org) unused for `hours`, or never used",
    )
    async def stale_ips(
        session: DbSession, scope: TenantScope = Depends(scope_of), hours: UnusedHours = 24.0
    ) -> list[StaleAddress]:
        return await monitoring.stale_addresses(
            session, scope, unused_for=timedelta(hours=hours), limit=10_000
        )

    return scoped


include_for_both_scopes(
    router, _scoped_routes, org=org_member_scope, server=server_scope_or_one_org
)


@router.post(
    "/connections/cleanup",
    tags=["monitoring"],
    summary="Delete ended connection rows older than `older_than_days` now (server administrator)",
)
async def cleanup_now(
    _admin: ServerAdmin,
    state: State,
    older_than_days: Annotated[float | None, Query(gt=0, le=36_500)] = None,
) -> CleanupReport:
    days = older_than_days or state.settings.connection_retention_days
    deleted, cutoff = await delete_old_connections(
        state.sessionmaker, timedelta(days=days), state.settings.cleanup_batch_size
    )
    return CleanupReport(deleted=deleted, cutoff=cutoff)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@router.get(
    "/server/stats",
    tags=["monitoring"],
    summary="This replica's live sessions, heartbeat flushes and event-loop lag (server admin)",
)
async def server_stats(_admin: ServerAdmin, state: State) -> ServerStats:
    hub = state.hub
    return ServerStats(
        server_id=hub.server_id,
        sessions=len(hub.registry),
        orgs_online=len(hub.registry.by_org),
        heartbeat_flushes=hub.flush_count,
        pending_heartbeats=hub.pending_heartbeats,
        loop_lag_p50_ms=round(hub.loop_lag.percentile(0.5) * 1000, 3),
        loop_lag_p99_ms=round(hub.loop_lag.percentile(0.99) * 1000, 3),
        rss_bytes=_rss_bytes(),
    )
