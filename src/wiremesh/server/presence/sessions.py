"""The live agent sessions this replica owns, by connection, device and organization."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from wiremesh.protocol import ServerSession
from wiremesh.server.db.base import utcnow
from wiremesh.server.presence.roster import DeviceIdentity, format_endpoint


class AgentTransport(Protocol):
    """The narrow view presence has of one agent socket."""

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class LiveSession:
    """One open agent session owned by this replica.

    Until its welcome is out, deltas for it wait in ``backlog``, so the full list always
    arrives before the first delta and no change made meanwhile is missed.
    """

    __slots__ = (
        "agent_version",
        "backlog",
        "closed",
        "connected_at",
        "connection_id",
        "device",
        "ended",
        "lan",
        "last_ping_at",
        "last_pong_at",
        "protocol",
        "protocol_version",
        "public_ip",
        "public_port",
        "row_id",
        "transport",
        "welcomed",
    )

    def __init__(
        self,
        *,
        device: DeviceIdentity,
        protocol: ServerSession,
        transport: AgentTransport,
        public_ip: str | None,
        public_port: int | None,
        agent_version: str | None,
        protocol_version: int = 1,
        lan: tuple[str, ...] = (),
    ) -> None:
        self.connection_id = uuid.uuid4()
        self.row_id = 0
        self.device = device
        self.protocol = protocol
        self.transport = transport
        self.public_ip = public_ip
        self.public_port = public_port
        self.agent_version = agent_version
        self.protocol_version = protocol_version
        """What the agent speaks: frames to it leave out fields of later versions."""
        self.lan = lan
        """The agent's own addresses with its listen port (version 2)."""
        self.connected_at = utcnow()
        self.last_ping_at: datetime | None = self.connected_at
        self.last_pong_at: datetime | None = self.connected_at
        """Set at connect: a session that just authenticated has answered, and the seed's
        "may time out" query must not list every agent that just connected."""
        self.ended = False
        self.closed = asyncio.Event()
        """Set once whoever ended the session is done with the socket (its close frame is
        out): the socket's own task waits for it, so the agent sees why it was closed."""
        self.welcomed = False
        self.backlog: list[str] = []

    @property
    def endpoint(self) -> str | None:
        return format_endpoint(self.public_ip, self.public_port)

    @property
    def last_seen_at(self) -> datetime:
        return self.last_pong_at or self.connected_at


class SessionRegistry:
    """Lookups of live sessions; membership only, no I/O."""

    def __init__(self) -> None:
        self.by_connection: dict[uuid.UUID, LiveSession] = {}
        self.by_device: dict[int, LiveSession] = {}
        self.by_org: dict[int, dict[int, LiveSession]] = {}

    def add(self, live: LiveSession) -> None:
        """Register a session; it receives its org's deltas (into its backlog until welcomed)."""
        device = live.device
        self.by_connection[live.connection_id] = live
        self.by_device[device.device_id] = live
        self.by_org.setdefault(device.org_id, {})[device.device_id] = live

    def remove(self, live: LiveSession) -> None:
        device = live.device
        self.by_connection.pop(live.connection_id, None)
        if self.by_device.get(device.device_id) is live:
            del self.by_device[device.device_id]
        org_sessions = self.by_org.get(device.org_id)
        if org_sessions is not None and org_sessions.get(device.device_id) is live:
            del org_sessions[device.device_id]
            if not org_sessions:
                del self.by_org[device.org_id]

    def clear(self) -> None:
        self.by_connection.clear()
        self.by_device.clear()
        self.by_org.clear()

    def of_org(self, org_id: int) -> list[LiveSession]:
        return list(self.by_org.get(org_id, {}).values())

    def all(self) -> Iterable[LiveSession]:
        return list(self.by_connection.values())

    def __len__(self) -> int:
        return len(self.by_connection)
