"""Who is looking at a page: the session cookie, the CSRF token, the orgs they can switch to.

Forms are protected by a synchronizer token: each form carries ``csrf``, an HMAC under the
secret of the browser's session cookie (or, before signing in, of a random pre-session
cookie), checked on every POST before anything else runs. Both cookies are HTTP-only and
SameSite=Lax, and Secure when the server is reached over https.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from wiremesh.server.auth import websessions
from wiremesh.server.auth.deps import DbSession
from wiremesh.server.auth.principal import Principal
from wiremesh.server.orgs import service as orgs_service
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.web.errors import PageRefusal, SignInRequired
from wiremesh.server.web.templating import PRESESSION_COOKIE, SESSION_COOKIE

CSRF_FIELD = "csrf"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class OrgChoice:
    id: int
    name: str
    role: OrgRole | None


@dataclass(slots=True)
class Viewer:
    """A signed-in person, as pages need them."""

    principal: Principal
    session_id: int
    email: str
    name: str
    orgs: list[OrgChoice] = field(default_factory=list)
    org_id: int | None = None  # the org the page is about, for the switcher

    @property
    def is_server_admin(self) -> bool:
        return self.principal.is_server_admin


def csrf_secret(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE)


def ensure_csrf(request: Request) -> None:
    """Make the page's CSRF token; before sign-in, start a pre-session cookie for it."""
    secret = csrf_secret(request)
    if secret is None:
        secret = secrets.token_urlsafe(32)
        request.state.new_presession = secret
    request.state.csrf = websessions.csrf_token(secret)


async def require_csrf(request: Request) -> None:
    """403 for a POST whose ``csrf`` field is missing or not this browser's token."""
    if request.method in _SAFE_METHODS:
        ensure_csrf(request)
        return
    secret = csrf_secret(request)
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if secret is None or not isinstance(token, str) or not websessions.csrf_matches(secret, token):
        raise PageRefusal(403, "The form has expired or did not come from this site. Reload it.")
    request.state.csrf = token


async def optional_viewer(request: Request, session: DbSession) -> Viewer | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret is None:
        return None
    found = await websessions.find_session(session, secret)
    if found is None:
        return None
    web_session, user = found
    principal = Principal(user_id=user.id, is_server_admin=user.is_server_admin, token_id=0)
    orgs = await orgs_service.list_orgs(session, principal)
    viewer = Viewer(
        principal=principal,
        session_id=web_session.id,
        email=user.email,
        name=user.name,
        orgs=[OrgChoice(id=org.id, name=org.name, role=role) for org, role in orgs],
    )
    request.state.viewer = viewer
    return viewer


async def current_viewer(
    viewer: Annotated[Viewer | None, Depends(optional_viewer)],
) -> Viewer:
    if viewer is None:
        raise SignInRequired()
    return viewer


async def server_admin_viewer(viewer: Annotated[Viewer, Depends(current_viewer)]) -> Viewer:
    if not viewer.is_server_admin:
        raise PageRefusal(403, "This page is for server administrators.")
    return viewer


OptionalViewer = Annotated[Viewer | None, Depends(optional_viewer)]
CurrentViewer = Annotated[Viewer, Depends(current_viewer)]
ServerAdminViewer = Annotated[Viewer, Depends(server_admin_viewer)]
