"""Rendering pages: one Jinja2 environment, and the headers every page carries.

The Content-Security-Policy allows scripts and styles from this server only (no inline
script or style, no ``eval``); pages are never cached and never framed, and carry no
Referer (a link's token must not leak to another site).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

SESSION_COOKIE = "wiremesh_session"
PRESESSION_COOKIE = "wiremesh_presession"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def format_when(value: datetime | None) -> str:
    return "never" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("wiremesh.server.web", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",)),
        undefined=StrictUndefined,
    )
    env.filters["when"] = format_when
    return env


def secure_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render_page(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    """The page ``name`` with ``context``; ``viewer`` (who is signed in, the CSRF token, the
    orgs to switch between) is filled in from the request when a dependency set it."""
    viewer = getattr(request.state, "viewer", None)
    csrf = getattr(request.state, "csrf", "")
    body = environment().get_template(name).render(viewer=viewer, csrf=csrf, **context)
    response = HTMLResponse(body, status_code=status)
    secure_headers(response)
    presession = getattr(request.state, "new_presession", None)
    if presession is not None:
        set_cookie(request, response, PRESESSION_COOKIE, presession)
    return response


def is_secure(request: Request) -> bool:
    """Reached over https (directly, or behind a proxy whose public URL is https)."""
    public = request.app.state.wiremesh.settings.public_url or ""
    return request.url.scheme == "https" or str(public).startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    """A cookie scripts cannot read, sent only to this site's own navigations and forms."""
    response.set_cookie(
        name, value, httponly=True, secure=is_secure(request), samesite="lax", path="/"
    )
