"""The HTTP paths the agent calls on the server, defined once for both ends. No I/O.

The agent builds its URLs from these, and the server mounts its routes under
:data:`API_PREFIX` and serves the agent WebSocket at :data:`AGENT_WEBSOCKET_PATH`, so a
path cannot change on one side only. The relay's path is in :mod:`.relay`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["AGENT_WEBSOCKET_PATH", "API_PREFIX", "ENROLL_PATH", "PUBLIC_KEY_PATH"]

API_PREFIX: Final = "/api/v1"
"""Every versioned API route is under this prefix."""

ENROLL_PATH: Final = f"{API_PREFIX}/enroll"
"""``POST``: a setup key and a public key in, the device and its credential out."""

PUBLIC_KEY_PATH: Final = f"{API_PREFIX}/agent/public-key"
"""``PUT`` with the device credential: the device's new public key (key rotation)."""

AGENT_WEBSOCKET_PATH: Final = f"{API_PREFIX}/agent/ws"
"""The agent's WebSocket session (see ``docs/protocol.md``)."""
