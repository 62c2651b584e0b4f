"""HTTP endpoints for setup keys, enrollment and devices."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wiremesh.server.auth.deps import CurrentPrincipal, DbSession, require_json_body
from wiremesh.server.devices import repository, service
from wiremesh.server.devices.models import SetupKey, VirtualIPMapping
from wiremesh.server.devices.schemas import (
    DeviceOut,
    DeviceUpdate,
    EnrollRequest,
    EnrollResponse,
    NetworkOut,
    PublicKeyUpdate,
    SetupKeyCreate,
    SetupKeyCreated,
    SetupKeyOut,
)
from wiremesh.server.errors import ApiError
from wiremesh.server.http_errors import error_responses, refuses
from wiremesh.server.orgs.deps import IdPath, OrgAdmin, OrgIdPath, OrgMember
from wiremesh.server.presence import repository as presence_repository

router = APIRouter(dependencies=[Depends(require_json_body)])
_device_bearer = HTTPBearer(
    auto_error=False, scheme_name="DeviceCredential", description="A device credential: `wmd_...`"
)


def setup_key_out(key: SetupKey) -> SetupKeyOut:
    return SetupKeyOut(
        id=key.id,
        org_id=key.org_id,
        user_id=key.user_id,
        name=key.name,
        reusable=key.reusable,
        usage_limit=key.usage_limit,
        used_count=key.used_count,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        usable=service.setup_key_usable(key),
    )


def device_out(device: VirtualIPMapping, online: bool) -> DeviceOut:
    """``online``: a live session on any replica (and never for a revoked device)."""
    return DeviceOut(
        id=device.id,
        org_id=device.org_id,
        user_id=device.user_id,
        peer_id=device.peer_id,
        hostname=device.hostname,
        virtual_ip=device.virtual_ip,
        public_key=device.public_key,
        created_at=device.created_at,
        last_seen_at=device.last_seen_at,
        revoked=device.revoked_at is not None,
        online=online and device.revoked_at is None,
    )


@router.post(
    "/orgs/{org_id}/setup-keys",
    tags=["devices"],
    summary="Create a setup key (org admin); the key is shown once",
    status_code=status.HTTP_201_CREATED,
)
async def create_setup_key(
    org_id: OrgIdPath,
    body: SetupKeyCreate,
    _role: OrgAdmin,
    principal: CurrentPrincipal,
    session: DbSession,
) -> SetupKeyCreated:
    owner = body.user_id
    if owner is None:
        owner = await service.default_key_owner(
            session, org_id, caller_user_id=principal.user_id, owner_option="user_id"
        )
    key, plaintext = await service.create_setup_key(
        session,
        org_id,
        owner_user_id=owner,
        name=body.name,
        reusable=body.reusable,
        usage_limit=body.usage_limit,
        expires_in=timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None,
    )
    await session.commit()
    return SetupKeyCreated(**setup_key_out(key).model_dump(), key=plaintext)


@router.get("/orgs/{org_id}/setup-keys", tags=["devices"], summary="List setup keys (org admin)")
async def list_setup_keys(
    org_id: OrgIdPath, _role: OrgAdmin, session: DbSession
) -> list[SetupKeyOut]:
    return [setup_key_out(key) for key in await repository.list_setup_keys(session, org_id)]


@router.delete(
    "/orgs/{org_id}/setup-keys/{key_id}",
    tags=["devices"],
    summary="Revoke a setup key (org admin); devices it enrolled stay",
)
async def revoke_setup_key(
    org_id: OrgIdPath, key_id: IdPath, _role: OrgAdmin, session: DbSession
) -> SetupKeyOut:
    key = await service.revoke_setup_key(session, org_id, key_id)
    await session.commit()
    return setup_key_out(key)


@router.post(
    "/enroll",
    tags=["agent"],
    summary="Enroll a device with a setup key; returns its virtual IP and credential",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 409),
)
async def enroll(body: EnrollRequest, session: DbSession) -> EnrollResponse:
    device, org, credential = await service.enroll(
        session, body.setup_key, body.hostname, body.public_key
    )
    await session.commit()
    return EnrollResponse(
        device=device_out(device, online=False),
        network=NetworkOut(org_id=org.id, org_name=org.name, network=org.network_cidr),
        credential=credential,
    )


@refuses(401, 403)
async def current_device(
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_device_bearer)],
) -> VirtualIPMapping:
    if credentials is None:
        raise ApiError(401, "unauthenticated", "a device credential is required")
    return await service.authenticate_device(session, credentials.credentials)


CurrentDevice = Annotated[VirtualIPMapping, Depends(current_device)]


@router.put(
    "/agent/public-key",
    tags=["agent"],
    summary="Set this device's WireGuard public key (key rotation); peers are told at once",
    responses=error_responses(409),
)
async def set_public_key(
    body: PublicKeyUpdate, device: CurrentDevice, session: DbSession
) -> DeviceOut:
    await service.set_public_key(session, device, body.public_key)
    await session.commit()
    return await _device_out(session, device)


async def _device_out(session: DbSession, device: VirtualIPMapping) -> DeviceOut:
    online = await presence_repository.online_peer_ids(session, device.org_id)
    return device_out(device, device.peer_id in online)


@router.get("/orgs/{org_id}/devices", tags=["devices"], summary="List the org's devices")
async def list_devices(org_id: OrgIdPath, _role: OrgMember, session: DbSession) -> list[DeviceOut]:
    devices = await repository.list_devices(session, org_id)
    online = await presence_repository.online_peer_ids(session, org_id)
    return [device_out(device, device.peer_id in online) for device in devices]


@router.get("/orgs/{org_id}/devices/{device_id}", tags=["devices"], summary="One device")
async def get_device(
    org_id: OrgIdPath, device_id: IdPath, _role: OrgMember, session: DbSession
) -> DeviceOut:
    return await _device_out(session, await service.get_device(session, org_id, device_id))


@router.patch(
    "/orgs/{org_id}/devices/{device_id}", tags=["devices"], summary="Rename a device (org admin)"
)
async def rename_device(
    org_id: OrgIdPath,
    device_id: IdPath,
    body: DeviceUpdate,
    _role: OrgAdmin,
    session: DbSession,
) -> DeviceOut:
    device = await service.rename_device(session, org_id, device_id, body.hostname)
    await session.commit()
    return await _device_out(session, device)


@router.post(
    "/orgs/{org_id}/devices/{device_id}/revoke",
    tags=["devices"],
    summary="Revoke a device (org admin): its session closes and it cannot reconnect",
    responses=error_responses(409),
)
async def revoke_device(
    org_id: OrgIdPath, device_id: IdPath, _role: OrgAdmin, session: DbSession
) -> DeviceOut:
    device = await service.revoke_device(session, org_id, device_id)
    await session.commit()
    return device_out(device, online=False)


@router.delete(
    "/orgs/{org_id}/devices/{device_id}",
    tags=["devices"],
    summary="Delete a device (org admin); its address is freed, its history kept",
    status_code=status.HTTP_204_NO_CONTENT,
)
async def delete_device(
    org_id: OrgIdPath, device_id: IdPath, _role: OrgAdmin, session: DbSession
) -> Response:
    await service.delete_device(session, org_id, device_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
