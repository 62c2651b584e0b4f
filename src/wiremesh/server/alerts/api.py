"""HTTP endpoints of alerts: an org's offline-alert settings (org admins)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from wiremesh.server.alerts import service
from wiremesh.server.alerts.schemas import AlertSettingsIn, AlertSettingsOut
from wiremesh.server.auth.deps import DbSession, require_json_body
from wiremesh.server.orgs.deps import OrgAdmin, OrgIdPath

router = APIRouter(tags=["alerts"], dependencies=[Depends(require_json_body)])


@router.get("/orgs/{org_id}/alerts", response_model=AlertSettingsOut)
async def get_org_alerts(
    org_id: OrgIdPath, _role: OrgAdmin, session: DbSession
) -> AlertSettingsOut:
    return AlertSettingsOut.of(await service.get_alert_settings(session, org_id))


@router.put("/orgs/{org_id}/alerts", response_model=AlertSettingsOut)
async def put_org_alerts(
    org_id: OrgIdPath, body: AlertSettingsIn, _role: OrgAdmin, session: DbSession
) -> AlertSettingsOut:
    view = await service.put_alert_settings(
        session,
        org_id,
        enabled=body.enabled,
        offline_threshold_seconds=body.offline_threshold_seconds,
        debounce_seconds=body.debounce_seconds,
    )
    await session.commit()
    return AlertSettingsOut.of(view)
