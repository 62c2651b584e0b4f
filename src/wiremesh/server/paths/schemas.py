"""What the API says about a device's paths to its peers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class PeerPathOut(BaseModel):
    """How the device reaches one peer, as its agent last reported."""

    peer_id: str
    hostname: str
    """The peer's hostname."""
    path: Literal["direct", "local", "relay", "none"]
    endpoint: str | None
    """The peer's address (direct, local) or the relay's (relay); null with ``none``."""
    last_handshake_at: datetime | None
    handshake_age_seconds: float | None
    """Seconds since ``last_handshake_at``, worked out when asked (never negative)."""
    reported_at: datetime
    """When the agent reported this row; a device offline since then shows its last view."""
