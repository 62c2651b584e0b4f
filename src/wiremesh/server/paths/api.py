"""The relay check-in endpoint (see ``wiremesh.protocol.relay``) and devices' paths."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wiremesh.protocol.relay import RelaySyncRequest, RelaySyncResponse
from wiremesh.server.auth.deps import DbSession, State
from wiremesh.server.devices import service as devices_service
from wiremesh.server.http_errors import error_responses
from wiremesh.server.orgs.deps import IdPath, OrgIdPath, OrgMember
from wiremesh.server.paths import service
from wiremesh.server.paths.schemas import PeerPathOut

router = APIRouter(tags=["relays"])
_relay_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="RelayToken",
    description="The global relay token, or a relay's own credential",
)


@router.post("/relay/sync", response_model=RelaySyncResponse, responses=error_responses(401, 403))
async def relay_sync(
    body: RelaySyncRequest,
    session: DbSession,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_relay_bearer)],
) -> RelaySyncResponse:
    """A relay's heartbeat, its endpoint reports, and the devices it forwards between."""
    token = credentials.credentials if credentials is not None else None
    configured = state.settings.relay_token
    await service.authorize_relay(
        session,
        configured.get_secret_value() if configured is not None else None,
        token,
        body.relay.name,
    )
    response = await service.sync(session, body)
    await session.commit()
    return response


@router.get(
    "/orgs/{org_id}/devices/{device_id}/paths",
    tags=["devices"],
    summary="How the device reaches each peer: path, endpoint, age of the last handshake",
)
async def device_paths(
    org_id: OrgIdPath, device_id: IdPath, _role: OrgMember, session: DbSession
) -> list[PeerPathOut]:
    """As the device's agent (protocol version 3) last reported; peers it never reported
    on, and every peer of an older agent, are not listed."""
    device = await devices_service.get_device(session, org_id, device_id)
    return await service.device_paths(session, device)
