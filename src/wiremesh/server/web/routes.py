"""Every dashboard page, behind the CSRF check that each form post passes first."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from wiremesh.server.web.account.pages import router as account_router
from wiremesh.server.web.admin.pages import router as admin_router
from wiremesh.server.web.devices.pages import router as devices_router
from wiremesh.server.web.devices.stream import router as stream_router
from wiremesh.server.web.invitations.pages import router as invitations_router
from wiremesh.server.web.mail.alerts import router as alerts_router
from wiremesh.server.web.mail.pages import router as mail_router
from wiremesh.server.web.orgs.pages import router as orgs_router
from wiremesh.server.web.orgs.setup_keys import router as setup_keys_router
from wiremesh.server.web.security import require_csrf
from wiremesh.server.web.signin.pages import router as signin_router
from wiremesh.server.web.tokens.pages import router as tokens_router


def dashboard_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_csrf)])
    for pages in (
        signin_router,
        orgs_router,
        setup_keys_router,
        stream_router,  # before the device page, whose {device_id} would take "stream"
        devices_router,
        invitations_router,
        tokens_router,
        account_router,
        mail_router,
        alerts_router,
        admin_router,
    ):
        router.include_router(pages)
    return router
