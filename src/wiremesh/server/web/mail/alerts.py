"""An org's offline alerts (admins): on or off, after how long offline, how often at most."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from wiremesh.server.alerts import service as alerts_service
from wiremesh.server.auth.deps import DbSession
from wiremesh.server.errors import ApiError
from wiremesh.server.web.errors import PageRefusal
from wiremesh.server.web.orgs.access import AdminPage
from wiremesh.server.web.templating import render_page

router = APIRouter()
Seconds = Annotated[int, Form(ge=0, le=10**9)]


@router.get("/orgs/{org_id}/alerts")
async def alert_settings(request: Request, page: AdminPage, session: DbSession) -> Response:
    view = await alerts_service.get_alert_settings(session, page.org.id)
    context = {**page.context("alerts"), "alerts": view}
    return render_page(request, "mail/alerts.html", context)


@router.post("/orgs/{org_id}/alerts")
async def save_alert_settings(
    page: AdminPage,
    session: DbSession,
    offline_threshold_seconds: Seconds,
    debounce_seconds: Seconds,
    enabled: Annotated[bool, Form()] = False,
) -> Response:
    try:
        await alerts_service.put_alert_settings(
            session,
            page.org.id,
            enabled=enabled,
            offline_threshold_seconds=offline_threshold_seconds,
            debounce_seconds=debounce_seconds,
        )
    except ApiError as exc:  # refused before anything was written
        raise PageRefusal(exc.status, exc.message) from None
    await session.commit()
    return RedirectResponse(f"/orgs/{page.org.id}/alerts", status_code=303)
