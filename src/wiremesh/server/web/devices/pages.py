"""Devices: the live list, rename, revoke and delete, and one device's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.devices import service as devices_service
from wiremesh.server.devices.schemas import DeviceUpdate
from wiremesh.server.presence import monitoring
from wiremesh.server.state import AppState
from wiremesh.server.web.devices.overview import device_rows, render_rows, rows_digest
from wiremesh.server.web.devices.timeline import PERIODS, timeline_svg
from wiremesh.server.web.errors import PageRefusal, as_page_refusal
from wiremesh.server.web.orgs.access import AdminPage, IdPath, MemberPage
from wiremesh.server.web.templating import render_page

router = APIRouter()


def silence(state: AppState) -> timedelta:
    """When a live session counts as at risk: the REST API's default, two missed pings."""
    return timedelta(seconds=2 * state.settings.heartbeat_interval)


@router.get("/orgs/{org_id}/devices")
async def device_list(
    request: Request, page: MemberPage, session: DbSession, state: State
) -> Response:
    rows = await device_rows(session, page.scope, silent_for=silence(state))
    html = render_rows(rows, {**page.context("devices"), "csrf": request.state.csrf})
    context = {**page.context("devices"), "rows_html": html, "digest": rows_digest(html)}
    return render_page(request, "devices/list.html", context)


@router.get("/orgs/{org_id}/devices/{device_id}")
async def device_page(
    request: Request,
    page: MemberPage,
    session: DbSession,
    device_id: IdPath,
    period: Annotated[str, Query(pattern="^(1h|24h|7d|30d)$")] = "24h",
) -> Response:
    with as_page_refusal():
        device = await devices_service.get_device(session, page.org.id, device_id)
    until = datetime.now(UTC)
    since = until - PERIODS[period]
    history = await monitoring.device_history(session, device, since=since, until=until)
    addresses = sorted({s.public_ip for s in history.sessions if s.public_ip})
    context = {
        **page.context("devices"),
        "device": device,
        "history": history,
        "period": period,
        "periods": list(PERIODS),
        "chart": timeline_svg(history.sessions, since, until),
        "addresses": addresses,
    }
    return render_page(request, "devices/device.html", context)


def _to_list(page: MemberPage) -> RedirectResponse:
    return RedirectResponse(f"/orgs/{page.org.id}/devices", status_code=303)


@router.post("/orgs/{org_id}/devices/{device_id}/rename")
async def rename(
    page: AdminPage,
    session: DbSession,
    device_id: IdPath,
    hostname: Annotated[str, Form(min_length=1, max_length=253)],
) -> Response:
    try:
        valid = DeviceUpdate(hostname=hostname)  # the API's rule for a hostname
    except ValidationError:
        raise PageRefusal(422, f"{hostname!r} is not a valid hostname") from None
    with as_page_refusal():
        await devices_service.rename_device(session, page.org.id, device_id, valid.hostname)
    await session.commit()
    return _to_list(page)


@router.post("/orgs/{org_id}/devices/{device_id}/revoke")
async def revoke(page: AdminPage, session: DbSession, device_id: IdPath) -> Response:
    with as_page_refusal():
        await devices_service.revoke_device(session, page.org.id, device_id)
    await session.commit()
    return _to_list(page)


@router.post("/orgs/{org_id}/devices/{device_id}/delete")
async def delete(page: AdminPage, session: DbSession, device_id: IdPath) -> Response:
    with as_page_refusal():
        await devices_service.delete_device(session, page.org.id, device_id)
    await session.commit()
    return _to_list(page)
