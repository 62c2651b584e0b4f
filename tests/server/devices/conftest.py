"""The presence fixtures (a live server, an org with an owner) serve the device tests too."""

from __future__ import annotations

from tests.server.presence.conftest import live_server, org

__all__ = ["live_server", "org"]
