"""Server administration: every organization, every user, this replica and its peers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.orgs import repository as orgs_repository
from wiremesh.server.presence import repository as presence_repository
from wiremesh.server.users import service as users_service
from wiremesh.server.web.security import ServerAdminViewer
from wiremesh.server.web.templating import render_page

router = APIRouter()
PAGE_SIZE = 500


@router.get("/admin")
async def admin_home(
    request: Request, viewer: ServerAdminViewer, session: DbSession, state: State
) -> Response:
    hub = state.hub
    context = {
        "orgs": await orgs_repository.list_page(session, limit=PAGE_SIZE, offset=0),
        "users": await users_service.list_users(session, limit=PAGE_SIZE),
        "replicas": await presence_repository.live_replicas(
            session, state.settings.replica_lease_ttl
        ),
        "stats": {
            "server_id": hub.server_id,
            "sessions": len(hub.registry),
            "orgs_online": len(hub.registry.by_org),
            "heartbeat_flushes": hub.flush_count,
            "loop_lag_p99_ms": round(hub.loop_lag.percentile(0.99) * 1000, 3),
        },
    }
    return render_page(request, "admin/admin.html", context)
