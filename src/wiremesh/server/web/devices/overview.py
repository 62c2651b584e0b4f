"""An org's devices as the dashboard lists them: each with its live session, if any.

Built from the same reads as the REST API (the devices repository, the presence monitoring
queries), so the page and ``GET /orgs/{id}/devices`` agree on who is online and at risk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.devices import repository as devices_repository
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.presence import monitoring
from wiremesh.server.presence.models import ConnectionState
from wiremesh.server.presence.schemas import ConnectionOut
from wiremesh.server.tenancy import OrgScope
from wiremesh.server.web.templating import environment

MAX_LIVE_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device: VirtualIPMapping
    live: ConnectionOut | None
    at_risk: bool

    @property
    def online(self) -> bool:
        return self.live is not None and self.device.revoked_at is None

    @property
    def revoked(self) -> bool:
        return self.device.revoked_at is not None

    @property
    def endpoint(self) -> str:
        if self.live is None or self.live.public_ip is None:
            return ""
        host = self.live.public_ip
        host = f"[{host}]" if ":" in host else host
        return host if self.live.public_port is None else f"{host}:{self.live.public_port}"

    @property
    def last_seen_at(self) -> datetime | None:
        if self.live is not None and self.live.last_seen_at is not None:
            return self.live.last_seen_at
        return self.device.last_seen_at


async def device_rows(
    session: AsyncSession, scope: OrgScope, *, silent_for: timedelta
) -> list[DeviceRow]:
    devices = await devices_repository.list_devices(session, scope.org_id)
    live = await monitoring.list_connections(
        session, scope, status=ConnectionState.CONNECTED, limit=MAX_LIVE_ROWS
    )
    risky = await monitoring.at_risk(session, scope, silent_for=silent_for, limit=MAX_LIVE_ROWS)
    live_by_peer = {row.peer_id: row for row in live}
    risky_peers = {row.peer_id for row in risky}
    return [
        DeviceRow(
            device=device,
            live=live_by_peer.get(device.peer_id),
            at_risk=device.peer_id in risky_peers and device.revoked_at is None,
        )
        for device in devices
    ]


def render_rows(rows: list[DeviceRow], context: dict[str, object]) -> str:
    """The table body, the same markup for the page and for the live stream."""
    return environment().get_template("devices/_rows.html").render(rows=rows, **context)


def rows_digest(html: str) -> str:
    """Names the rows a page shows, so the stream sends them only once they changed."""
    return hashlib.sha256(html.encode()).hexdigest()[:16]
