"""Request and response bodies for setup keys, enrollment and devices."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from wiremesh.server.validation import DbId, Secret, ShortName
from wiremesh.server.validation import Hostname as Hostname
from wiremesh.server.validation import WireGuardKey as WireGuardKey

MAX_SETUP_KEY_LIFETIME = 10 * 365 * 86400


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SetupKeyCreate(StrictModel):
    name: ShortName = Field(description="A label for the key, 1 to 64 characters on one line")
    reusable: bool = False
    usage_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    expires_in_seconds: int | None = Field(default=None, ge=60, le=MAX_SETUP_KEY_LIFETIME)
    user_id: DbId | None = Field(
        default=None,
        description=(
            "Member who will own the enrolled devices; default: you, or, for a server "
            "administrator who is not a member, the organization's first owner"
        ),
    )


class SetupKeyOut(BaseModel):
    id: int
    org_id: int
    user_id: int
    name: str
    reusable: bool
    usage_limit: int | None
    used_count: int
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    usable: bool


class SetupKeyCreated(SetupKeyOut):
    key: str = Field(description="Shown once; only a hash is stored")


class EnrollRequest(StrictModel):
    setup_key: Secret
    hostname: Hostname
    public_key: WireGuardKey | None = None


class NetworkOut(BaseModel):
    org_id: int
    org_name: str
    network: str


class DeviceOut(BaseModel):
    id: int
    org_id: int
    user_id: int
    peer_id: str
    hostname: str
    virtual_ip: str
    public_key: str | None
    created_at: datetime
    last_seen_at: datetime | None
    revoked: bool
    online: bool


class EnrollResponse(BaseModel):
    device: DeviceOut
    network: NetworkOut
    credential: str = Field(description="The device's secret; keep it, it is shown once")


class DeviceUpdate(StrictModel):
    hostname: Hostname


class PublicKeyUpdate(StrictModel):
    public_key: WireGuardKey
