"""The web dashboard: server-rendered pages for people, signed in with a session cookie.

Every page authorizes through the same services as the REST API (``orgs.service``'s role
rule, the tenant scopes); this package only parses forms, renders templates and commits.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from wiremesh.server.config import Settings
from wiremesh.server.web.errors import install_page_errors
from wiremesh.server.web.routes import dashboard_router

STATIC_DIR = Path(__file__).parent / "static"


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    """The dashboard's pages at ``/``, its scripts and styles at ``/static``."""
    install_page_errors(app)
    app.include_router(dashboard_router(), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
