"""The kinds of event, typed: what each one carries so that a replica can apply it alone."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """Common fields: ``id`` is given by the database; ``org_id`` is its own column."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    KINDS: ClassVar[tuple[str, ...]] = ()

    id: int = 0
    org_id: int
    kind: str

    def payload(self) -> dict[str, Any]:
        """What goes into the ``payload`` column (everything but the columns of its own)."""
        return self.model_dump(mode="json", exclude={"id", "org_id", "kind"})


class DeviceChanged(Event):
    """A device was enrolled, renamed or re-keyed: the identity its peers see."""

    KINDS: ClassVar[tuple[str, ...]] = ("device_enrolled", "device_updated")
    kind: Literal["device_enrolled", "device_updated"]
    device_id: int
    user_id: int
    peer_id: str
    hostname: str
    virtual_ip: str
    public_key: str | None
    network: str


class DeviceRemoved(Event):
    """A device was revoked or deleted: peers drop it, its session closes wherever it is."""

    KINDS: ClassVar[tuple[str, ...]] = ("device_revoked", "device_deleted")
    kind: Literal["device_revoked", "device_deleted"]
    device_id: int
    peer_id: str


class SessionOpened(Event):
    """A device's agent session started on ``server_id``; any older session of it has ended."""

    KINDS: ClassVar[tuple[str, ...]] = ("session_opened",)
    kind: Literal["session_opened"] = "session_opened"
    peer_id: str
    connection_id: uuid.UUID
    server_id: str | None
    public_ip: str | None
    public_port: int | None
    lan: list[str] = []
    """The agent's own addresses with its listen port (protocol version 2 agents)."""


class SessionEnded(Event):
    """A session's row was ended (by its replica, a newer session, or a lease reaper)."""

    KINDS: ClassVar[tuple[str, ...]] = ("session_ended",)
    kind: Literal["session_ended"] = "session_ended"
    peer_id: str
    connection_id: uuid.UUID
    server_id: str | None
    reason: str


class EndpointChanged(Event):
    """The WireGuard endpoint peers should use for a live session changed."""

    KINDS: ClassVar[tuple[str, ...]] = ("endpoint_changed",)
    kind: Literal["endpoint_changed"] = "endpoint_changed"
    peer_id: str
    connection_id: uuid.UUID
    public_ip: str | None
    public_port: int | None


class EndpointObserved(Event):
    """A relay saw the device's packets come from ``endpoint``: the mapping its NAT made."""

    KINDS: ClassVar[tuple[str, ...]] = ("endpoint_observed",)
    kind: Literal["endpoint_observed"] = "endpoint_observed"
    peer_id: str
    endpoint: str
    relay: str


RELAY_ORG_ID = 0
"""Relays serve every organization: their events carry this ``org_id`` (no org has it)."""


class RelayChanged(Event):
    """A relay came up, moved, or went away; every replica tells its version 2 agents."""

    KINDS: ClassVar[tuple[str, ...]] = ("relay_changed",)
    kind: Literal["relay_changed"] = "relay_changed"
    org_id: int = RELAY_ORG_ID
    name: str
    public_key: str
    endpoint: str
    online: bool


class OrgDeleted(Event):
    """An organization and all its devices are gone."""

    KINDS: ClassVar[tuple[str, ...]] = ("org_deleted",)
    kind: Literal["org_deleted"] = "org_deleted"


AnyEvent = (
    DeviceChanged
    | DeviceRemoved
    | SessionOpened
    | SessionEnded
    | EndpointChanged
    | EndpointObserved
    | RelayChanged
    | OrgDeleted
)

EVENT_TYPES: dict[str, type[Event]] = {
    kind: model
    for model in (
        DeviceChanged,
        DeviceRemoved,
        SessionOpened,
        SessionEnded,
        EndpointChanged,
        EndpointObserved,
        RelayChanged,
        OrgDeleted,
    )
    for kind in model.KINDS
}


def parse_event(event_id: int, org_id: int, kind: str, payload: dict[str, Any]) -> AnyEvent | None:
    """A stored row as its typed event; None for a kind this version does not know."""
    model = EVENT_TYPES.get(kind)
    if model is None:
        return None
    return cast(
        AnyEvent,
        model.model_validate({**payload, "id": event_id, "org_id": org_id, "kind": kind}),
    )
