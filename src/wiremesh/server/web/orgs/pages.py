"""Organizations: the start page, the list and the switcher, members and roles, stale IPs."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from wiremesh.server.auth.deps import DbSession
from wiremesh.server.orgs import service as orgs_service
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.presence.monitoring import stale_addresses
from wiremesh.server.users.schemas import MAX_DB_ID
from wiremesh.server.web.errors import as_page_refusal
from wiremesh.server.web.orgs.access import AdminPage, IdPath, MemberPage
from wiremesh.server.web.security import CurrentViewer
from wiremesh.server.web.templating import render_page

router = APIRouter()


def back_to(path: str) -> RedirectResponse:
    """After a form post: see the page again (a reload does not post twice)."""
    return RedirectResponse(path, status_code=303)


@router.get("/")
async def start(viewer: CurrentViewer) -> Response:
    if len(viewer.orgs) == 1:
        return back_to(f"/orgs/{viewer.orgs[0].id}/devices")
    return back_to("/orgs")


@router.get("/orgs")
async def org_list(request: Request, viewer: CurrentViewer) -> Response:
    return render_page(request, "orgs/list.html", {"orgs": viewer.orgs})


@router.get("/orgs/switch")
async def switch(
    viewer: CurrentViewer, org_id: Annotated[int, Query(ge=1, le=MAX_DB_ID)]
) -> Response:
    return back_to(f"/orgs/{org_id}/devices")


@router.get("/orgs/{org_id}")
async def org_home(page: MemberPage) -> Response:
    return back_to(f"/orgs/{page.org.id}/devices")


@router.get("/orgs/{org_id}/members")
async def members(request: Request, page: MemberPage, session: DbSession) -> Response:
    with as_page_refusal():
        rows = await orgs_service.list_members(session, page.viewer.principal, page.org.id)
    context = {**page.context("members"), "members": rows, "roles": list(OrgRole)}
    return render_page(request, "orgs/members.html", context)


@router.post("/orgs/{org_id}/members/{user_id}/role")
async def change_role(
    page: AdminPage, session: DbSession, user_id: IdPath, role: Annotated[OrgRole, Form()]
) -> Response:
    with as_page_refusal():
        await orgs_service.change_role(session, page.viewer.principal, page.org.id, user_id, role)
    await session.commit()
    return back_to(f"/orgs/{page.org.id}/members")


@router.post("/orgs/{org_id}/members/{user_id}/remove")
async def remove_member(page: MemberPage, session: DbSession, user_id: IdPath) -> Response:
    with as_page_refusal():
        await orgs_service.remove_member(session, page.viewer.principal, page.org.id, user_id)
    await session.commit()
    if user_id == page.viewer.principal.user_id:
        return back_to("/orgs")
    return back_to(f"/orgs/{page.org.id}/members")


@router.get("/orgs/{org_id}/stale")
async def stale(
    request: Request,
    page: MemberPage,
    session: DbSession,
    hours: Annotated[int, Query(ge=1, le=24 * 365)] = 24,
) -> Response:
    rows = await stale_addresses(session, page.scope, unused_for=timedelta(hours=hours), limit=500)
    context = {**page.context("stale"), "rows": rows, "hours": hours}
    return render_page(request, "orgs/stale.html", context)
