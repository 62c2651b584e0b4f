"""Setup keys of an org (admins): create one (the key is shown once), revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from wiremesh.server.auth.deps import DbSession
from wiremesh.server.devices import repository as devices_repository
from wiremesh.server.devices import service as devices_service
from wiremesh.server.errors import ApiError
from wiremesh.server.web.errors import as_page_refusal
from wiremesh.server.web.orgs.access import AdminPage, IdPath
from wiremesh.server.web.templating import render_page

router = APIRouter()


async def _page(
    request: Request,
    page: AdminPage,
    session: DbSession,
    *,
    created: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    keys = await devices_repository.list_setup_keys(session, page.org.id)
    context = {
        **page.context("setup-keys"),
        "keys": [(key, devices_service.setup_key_usable(key)) for key in keys],
        "created": created,
        "error": error,
    }
    return render_page(request, "orgs/setup_keys.html", context, status=status)


@router.get("/orgs/{org_id}/setup-keys")
async def key_list(request: Request, page: AdminPage, session: DbSession) -> Response:
    return await _page(request, page, session)


@router.post("/orgs/{org_id}/setup-keys")
async def create(
    request: Request,
    page: AdminPage,
    session: DbSession,
    name: Annotated[str, Form(min_length=1, max_length=64)],
    reusable: Annotated[bool, Form()] = False,
    expires_in_days: Annotated[int | None, Form(ge=1, le=3650)] = None,
) -> Response:
    try:
        async with session.begin_nested():  # a refusal undoes only this, the page stays loaded
            owner = await devices_service.default_key_owner(
                session,
                page.org.id,
                caller_user_id=page.viewer.principal.user_id,
                owner_option="owner",
            )
            _key, plaintext = await devices_service.create_setup_key(
                session,
                page.org.id,
                owner_user_id=owner,
                name=name,
                reusable=reusable,
                usage_limit=None,
                expires_in=timedelta(days=expires_in_days) if expires_in_days else None,
            )
    except ApiError as exc:
        return await _page(request, page, session, error=exc.message, status=exc.status)
    await session.commit()
    return await _page(request, page, session, created=plaintext)


@router.post("/orgs/{org_id}/setup-keys/{key_id}/revoke")
async def revoke(page: AdminPage, session: DbSession, key_id: IdPath) -> Response:
    with as_page_refusal():
        await devices_service.revoke_setup_key(session, page.org.id, key_id)
    await session.commit()
    return RedirectResponse(f"/orgs/{page.org.id}/setup-keys", status_code=303)
