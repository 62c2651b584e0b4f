"""The device list, live: Server-Sent Events carrying the table's new body when it changes.

The stream waits on the org's ``EventBroadcast`` watcher (sessions opened and ended, devices
enrolled, renamed, revoked, deleted: whichever replica made the change), re-reads the rows
with the same queries as the page, and sends them only when the rendered rows differ from
the last ones sent (at first: the ones the page was rendered with, ``shown``). A
slow heartbeat re-check catches what no event announces (a session turning at-risk).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.state import AppState
from wiremesh.server.tenancy import OrgScope
from wiremesh.server.web.devices.overview import device_rows, render_rows, rows_digest
from wiremesh.server.web.orgs.access import MemberPage
from wiremesh.server.web.templating import secure_headers

router = APIRouter()

RECHECK_SECONDS = 5.0
"""Without an event, re-read this often: at-risk and last-seen change without one."""


async def _rows_html(
    state: AppState, scope: OrgScope, context: dict[str, object], silent_for: timedelta
) -> str:
    async with state.sessionmaker() as session:
        rows = await device_rows(session, scope, silent_for=silent_for)
    return render_rows(rows, context)


def _event(name: str, data: dict[str, object]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@router.get("/orgs/{org_id}/devices/stream")
async def device_stream(
    request: Request,
    page: MemberPage,
    state: State,
    session: DbSession,
    shown: Annotated[str, Query(max_length=64)] = "",
) -> StreamingResponse:
    """The request's own database session ends here; each re-read opens a short one, so a
    page open for hours holds no connection of the pool."""
    await session.close()  # the authorization's connection goes back to the pool now
    scope = page.scope
    silent_for = timedelta(seconds=2 * state.settings.heartbeat_interval)
    context: dict[str, object] = {
        "org": page.org,
        "page": page,
        "csrf": getattr(request.state, "csrf", ""),
    }
    broadcast = state.broadcast

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        sent = shown  # the digest of the rows the page was rendered with
        with broadcast.watch(scope.org_id) if broadcast else contextlib.nullcontext() as watcher:
            while not await request.is_disconnected():
                if watcher is not None:
                    watcher.clear()
                html = await _rows_html(state, scope, context, silent_for)
                digest = rows_digest(html)
                if digest != sent:
                    sent = digest
                    yield _event("devices", {"html": html})
                else:
                    yield ": keep-alive\n\n"
                if watcher is None:
                    await asyncio.sleep(RECHECK_SECONDS)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watcher.wait(), RECHECK_SECONDS)

    response = StreamingResponse(events(), media_type="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"
    secure_headers(response)
    return response
