"""Request and response bodies for setup keys, enrollment and devices."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from wiremesh.server.users.schemas import DbId

_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$")
MAX_SETUP_KEY_LIFETIME = 10 * 365 * 86400


def _check_hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError(
            "a hostname is 1-63 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_wireguard_key(value: str) -> str:
    """A WireGuard key is 32 bytes in standard base64 (44 characters)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a WireGuard key: expected 32 bytes in base64") from None
    if len(raw) != 32 or len(value) != 44:
        raise ValueError("not a WireGuard key: expected 32 bytes in base64")
    return value


Hostname = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(_check_hostname)]
WireGuardKey = Annotated[
    str, Field(min_length=44, max_length=44), AfterValidator(check_wireguard_key)
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SetupKeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=64)
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
    setup_key: str = Field(min_length=1, max_length=256)
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
