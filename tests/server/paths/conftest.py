"""Relay check-ins against the real app on both databases: a relay token, a small org with
devices, and a look at everything a check-in may write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_org, make_user
from tests.protocol.helpers import wg_key
from wiremesh.protocol.relay import RELAY_SYNC_PATH
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.events.models import MeshEvent
from wiremesh.server.paths.models import DeviceCandidates, Relay

RELAY_TOKEN = "relay-token-for-tests-0123456789"


@pytest.fixture
def relay_token() -> str | None:
    """The server's global relay token; a test parametrizes it to None for a server without."""
    return RELAY_TOKEN


@pytest.fixture
def settings(settings: Settings, relay_token: str | None) -> Settings:
    return settings.model_copy(
        update={"relay_token": SecretStr(relay_token) if relay_token is not None else None}
    )


@dataclass(frozen=True)
class Mesh:
    """One org with two active devices, one revoked and one not yet keyed."""

    org_id: int
    network: str
    active: list[VirtualIPMapping]
    revoked: VirtualIPMapping
    keyless: VirtualIPMapping


@pytest.fixture
async def mesh(sessionmaker: async_sessionmaker[AsyncSession]) -> Mesh:
    async with sessionmaker() as session:
        org = await make_org(session, network_cidr="100.64.7.0/24")
        user = await make_user(session)

        def device(index: int, **extra: Any) -> VirtualIPMapping:
            return VirtualIPMapping(
                org_id=org.id,
                user_id=user.id,
                peer_id=f"peer-{index}",
                virtual_ip=f"100.64.7.{index}",
                hostname=f"host{index}",
                credential_lookup=f"lookup{index:010d}",
                credential_hash="0" * 64,
                **extra,
            )

        active = [device(1, public_key=wg_key(101)), device(2, public_key=wg_key(102))]
        revoked = device(3, public_key=wg_key(103), revoked_at=utcnow())
        keyless = device(4)
        session.add_all([*active, revoked, keyless])
        await session.commit()
        return Mesh(org.id, org.network_cidr, active, revoked, keyless)


def relay_body(
    name: str = "r1",
    *,
    key: str | None = None,
    endpoint: str = "198.51.100.7:3478",
    version: int = 0,
    observed: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "relay": {"name": name, "public_key": key or wg_key(1), "endpoint": endpoint},
        "version": version,
        "observed": observed or [],
    }


async def post_sync(
    client: httpx.AsyncClient, body: dict[str, Any], token: str | None = RELAY_TOKEN
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await client.post(RELAY_SYNC_PATH, json=body, headers=headers)


@dataclass(frozen=True)
class Written:
    """What relay check-ins write: relay rows, candidates and events."""

    relays: list[tuple[str, str, str, bool]]
    observed: list[tuple[int, str | None, str | None]]
    events: list[tuple[str, int, dict[str, Any]]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [payload for event_kind, _org, payload in self.events if event_kind == kind]


async def written(sessionmaker: async_sessionmaker[AsyncSession]) -> Written:
    async with sessionmaker() as session:
        relays = await session.execute(
            select(Relay.name, Relay.public_key, Relay.endpoint, Relay.online).order_by(Relay.name)
        )
        observed = await session.execute(
            select(
                DeviceCandidates.device_id,
                DeviceCandidates.observed,
                DeviceCandidates.observed_by,
            ).order_by(DeviceCandidates.device_id)
        )
        events = await session.execute(
            select(MeshEvent.kind, MeshEvent.org_id, MeshEvent.payload).order_by(MeshEvent.id)
        )
        return Written(
            relays=[(name, key, endpoint, online) for name, key, endpoint, online in relays],
            observed=[(device_id, seen, by) for device_id, seen, by in observed],
            events=[(kind, org_id, payload) for kind, org_id, payload in events],
        )
