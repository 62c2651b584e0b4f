"""The live-server fixtures of presence: the transition tests run a real server too."""

from __future__ import annotations

from tests.server.presence.conftest import live_server, org

__all__ = ["live_server", "org"]
