"""The relay check-in endpoint (see ``wiremesh.protocol.relay``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from wiremesh.protocol.relay import RelaySyncRequest, RelaySyncResponse
from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.paths import service

router = APIRouter(tags=["relays"])


@router.post("/relay/sync", response_model=RelaySyncResponse)
async def relay_sync(
    body: RelaySyncRequest,
    session: DbSession,
    state: State,
    authorization: Annotated[str | None, Header()] = None,
) -> RelaySyncResponse:
    """A relay's heartbeat, its endpoint reports, and the devices it forwards between."""
    token = authorization.removeprefix("Bearer ").strip() if authorization else None
    configured = state.settings.relay_token
    service.check_relay_token(
        configured.get_secret_value() if configured is not None else None, token
    )
    response = await service.sync(session, body)
    await session.commit()
    return response
