"""What the API says about a device's paths to its peers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


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


RelayName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
"""The rule of the protocol's ``Relay.name``: a credential is for a name a relay can send."""


class RelayCredentialCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: RelayName = Field(description="a-z, 0-9 and '-', up to 32, not starting with '-'")


class RelayOut(BaseModel):
    """A relay as the operator sees it: its credential (never the secret) and its state."""

    name: str
    credential: Literal["own", "global"]
    """``own``: it checks in with its own credential; ``global``: with the server's token."""
    online: bool
    endpoint: str | None
    """Where devices send to, as the relay last said; null before its first check-in."""
    last_seen_at: datetime | None
    created_at: datetime | None
    """When its own credential was made; null for a relay on the global token."""
