"""Replica leases: the rows a dead server process left ``connected`` are ended, once, as
``server_lost`` at the moment they were last seen; a live replica's rows stay."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_org, make_user
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.presence import repository
from wiremesh.server.presence.hub import PresenceHub
from wiremesh.server.presence.models import ConnectionStatus, ServerReplica


@dataclass
class Tenant:
    user_id: int
    org_id: int


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> Tenant:
    async with sessionmaker() as session:
        org = await make_org(session)
        user = await make_user(session)
        await session.commit()
        return Tenant(user.id, org.id)


@pytest.fixture
def hub(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> PresenceHub:
    """A hub that is not started: the test calls what it wants to see."""
    return PresenceHub(settings, sessionmaker)


def _row(
    tenant: Tenant,
    server_id: str | None,
    *,
    connected_at: datetime,
    last_seen_at: datetime | None,
    status: str = "connected",
) -> ConnectionStatus:
    return ConnectionStatus(
        user_id=tenant.user_id,
        org_id=tenant.org_id,
        virtual_ip="100.64.0.1",
        peer_id=f"peer-{uuid.uuid4().hex[:8]}",
        connection_id=uuid.uuid4(),
        status=status,
        connected_at=connected_at,
        disconnected_at=None if status == "connected" else last_seen_at,
        last_seen_at=last_seen_at,
        end_reason=None if status == "connected" else "client_closed",
        server_id=server_id,
    )


async def _set_lease(session: AsyncSession, server_id: str, heartbeat_at: datetime) -> None:
    """A lease renewed at a given moment (as if on another replica, long ago)."""
    lease = await session.get(ServerReplica, server_id)
    if lease is None:
        session.add(
            ServerReplica(server_id=server_id, started_at=heartbeat_at, heartbeat_at=heartbeat_at)
        )
    else:
        lease.heartbeat_at = heartbeat_at
    await session.flush()


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, ConnectionStatus]:
    async with sessionmaker() as session:
        rows = (await session.execute(select(ConnectionStatus))).scalars().all()
    return {str(row.server_id): row for row in rows if row.end_reason != "client_closed"}


async def test_reconcile_orphans_ends_what_dead_processes_left(
    backend: str,
    settings: Settings,
    hub: PresenceHub,
    tenant: Tenant,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow().replace(microsecond=0)
    ttl = timedelta(seconds=settings.replica_lease_ttl)
    seen = now - timedelta(minutes=3)
    started = now - timedelta(minutes=10)
    old_end = now - timedelta(hours=1)
    async with sessionmaker() as session:
        session.add_all(
            [
                ServerReplica(server_id="live", started_at=started, heartbeat_at=now),
                ServerReplica(
                    server_id="barely-live",
                    started_at=started,
                    heartbeat_at=now - ttl + timedelta(seconds=10),
                ),
                ServerReplica(
                    server_id="dead",
                    started_at=started,
                    heartbeat_at=now - ttl - timedelta(seconds=1),
                ),
                _row(tenant, hub.server_id, connected_at=started, last_seen_at=seen),
                _row(tenant, "live", connected_at=started, last_seen_at=seen),
                _row(tenant, "barely-live", connected_at=started, last_seen_at=seen),
                _row(tenant, "dead", connected_at=started, last_seen_at=seen),
                _row(tenant, "no-lease", connected_at=started, last_seen_at=None),
                _row(tenant, None, connected_at=started, last_seen_at=seen),
                # History of the dead replica: already ended, never rewritten.
                _row(tenant, "dead", connected_at=started, last_seen_at=old_end, status="timeout"),
            ]
        )
        await session.commit()

    ended = await hub.leases.reap_orphans()

    rows = await _rows(sessionmaker)
    lost = {"dead", "no-lease", "None"}
    if backend == "sqlite":
        # One process per SQLite database: every row not this process's own is an orphan.
        lost |= {"live", "barely-live"}
    assert ended == len(lost)
    assert {name for name, row in rows.items() if row.status != "connected"} == lost
    for name in lost:
        row = rows[name]
        assert (row.status, row.end_reason) == ("disconnected", "server_lost")
        expected_end = started if name == "no-lease" else seen
        assert row.disconnected_at == expected_end, name
    assert rows[hub.server_id].status == "connected"
    assert rows[hub.server_id].disconnected_at is None
    async with sessionmaker() as session:
        history = (
            await session.execute(
                select(ConnectionStatus).where(ConnectionStatus.end_reason == "client_closed")
            )
        ).scalar_one()
    assert (history.status, history.disconnected_at) == ("timeout", old_end)
    assert await hub.leases.reap_orphans() == 0, "an orphan is ended once"


async def test_a_replica_whose_lease_runs_out_loses_its_rows(
    backend: str,
    settings: Settings,
    hub: PresenceHub,
    tenant: Tenant,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has one server process; leases matter with several replicas")
    now = utcnow()
    async with sessionmaker() as session:
        await repository.renew_lease(session, "other")
        session.add(_row(tenant, "other", connected_at=now, last_seen_at=now))
        await session.commit()
    assert await hub.leases.reap_orphans() == 0
    async with sessionmaker() as session:
        await _set_lease(session, "other", now - timedelta(seconds=settings.replica_lease_ttl + 1))
        await session.commit()
    assert await hub.leases.reap_orphans() == 1
    assert (await _rows(sessionmaker))["other"].end_reason == "server_lost"


async def test_lease_rows_are_renewed_listed_forgotten_and_dropped(
    hub: PresenceHub, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await hub.leases.renew()
    async with sessionmaker() as session:
        first = await session.get(ServerReplica, hub.server_id)
        assert first is not None
        first_beat = first.heartbeat_at
    await hub.leases.renew()
    async with sessionmaker() as session:
        renewed = await session.get(ServerReplica, hub.server_id)
        assert renewed is not None
        assert renewed.heartbeat_at >= first_beat
        assert renewed.started_at == first.started_at
        ancient = utcnow() - timedelta(days=2)
        await _set_lease(session, "ancient", ancient)
        await session.commit()
    async with sessionmaker() as session:
        assert await repository.live_replicas(session, 60) == [hub.server_id]
        await repository.forget_dead_replicas(session, 86_400)
        await repository.drop_lease(session, hub.server_id)
        await session.commit()
    async with sessionmaker() as session:
        assert (await session.execute(select(ServerReplica))).scalars().all() == []


async def test_start_ends_orphans_before_serving_and_stop_drops_the_lease(
    hub: PresenceHub, tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    async with sessionmaker() as session:
        session.add(_row(tenant, "crashed", connected_at=now, last_seen_at=now))
        await session.commit()
    await hub.start()
    try:
        assert (await _rows(sessionmaker))["crashed"].end_reason == "server_lost"
        async with sessionmaker() as session:
            assert await session.get(ServerReplica, hub.server_id) is not None
    finally:
        await hub.stop()
    async with sessionmaker() as session:
        assert await session.get(ServerReplica, hub.server_id) is None


async def test_a_restart_under_a_stable_server_id_ends_its_previous_rows_at_once(
    settings: Settings,
    tenant: Tenant,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    stable = settings.model_copy(update={"server_id": "replica-1"})
    seen = utcnow() - timedelta(seconds=3)
    async with sessionmaker() as session:
        # Its previous life still holds a fresh lease: it was killed a moment ago.
        await repository.renew_lease(session, "replica-1")
        session.add(_row(tenant, "replica-1", connected_at=seen, last_seen_at=seen))
        await session.commit()
    restarted = PresenceHub(stable, sessionmaker)
    assert await restarted.leases.reap_orphans() == 0  # while running, its own rows are live
    assert await restarted.leases.reap_orphans(starting=True) == 1
    row = (await _rows(sessionmaker))["replica-1"]
    assert row.status == "disconnected"
    assert row.disconnected_at == seen
    assert row.end_reason == "server_lost"
