"""The presence hub: device sync closes sessions of devices revoked elsewhere, and the
heartbeat flush writes one batch per interval and never rewrites history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, event, select, text, update
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from tests.factories import make_org, make_user
from tests.protocol.helpers import auth_frame
from tests.server.devices.agents import close_code, connect_agent, removal_of, wait_for_change
from tests.support.live import LiveServer, OrgFixture, create_setup_key, enroll
from wiremesh.protocol import (
    CloseCode,
    PeersDeltaMessage,
    PeerUpsert,
    ServerSession,
    decode_server_message,
)
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.db.session import create_sessionmaker
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.events.feed import EventFeed
from wiremesh.server.presence.directory import identity_of
from wiremesh.server.presence.gateway import _session_loop
from wiremesh.server.presence.history import SessionHistory
from wiremesh.server.presence.hub import PresenceHub
from wiremesh.server.presence.leases import ReplicaLeases
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus
from wiremesh.server.presence.sessions import LiveSession

# --- device sync: revocations made elsewhere (CLI, another replica) ---------------------------


async def _end_reason(sessionmaker: async_sessionmaker[AsyncSession], peer_id: str) -> Any:
    async with sessionmaker() as session:
        return (
            await session.execute(
                select(ConnectionStatus.status, ConnectionStatus.end_reason).where(
                    ConnectionStatus.peer_id == peer_id
                )
            )
        ).one()


async def test_sync_devices_closes_sessions_of_devices_revoked_or_deleted_in_the_database(
    live_server: LiveServer, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        key = await create_setup_key(client, org)
        devices = [await enroll(client, key, name) for name in ("keep", "revoke", "delete")]
    ids = [d["device"]["id"] for d in devices]  # type: ignore[index]
    peers = [d["device"]["peer_id"] for d in devices]  # type: ignore[index]
    sockets = [await connect_agent(live_server.ws_url, str(d["credential"])) for d in devices]
    hub: PresenceHub = live_server.app.state.wiremesh.hub
    assert await hub.sync_devices() == 0
    async with sessionmaker() as session:  # what `wiremesh device revoke/delete` does
        await session.execute(
            update(VirtualIPMapping)
            .where(VirtualIPMapping.id == ids[1])
            .values(revoked_at=utcnow())
        )
        await session.execute(delete(VirtualIPMapping).where(VirtualIPMapping.id == ids[2]))
        await session.commit()

    assert await hub.sync_devices() == 2

    assert await close_code(sockets[1]) == CloseCode.DEVICE_REVOKED
    assert await close_code(sockets[2]) == CloseCode.DEVICE_REVOKED
    for peer in peers[1:]:
        assert tuple(await _end_reason(sessionmaker, peer)) == ("disconnected", "revoked")
    await wait_for_change(sockets[0], removal_of(peers[1]))
    assert hub.is_online(ids[0])
    assert not hub.is_online(ids[1])
    assert not hub.is_online(ids[2])
    assert await hub.sync_devices() == 0
    await sockets[0].close()


# --- heartbeat flush --------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: list[int] = []
        self.sent_at: list[float] = []
        """Loop time of each send."""
        self.delivered = asyncio.Event()
        """Set at every send; a test clears it to wait for the next one."""

    async def send(self, text: str) -> None:
        self.sent.append(text)
        self.sent_at.append(asyncio.get_running_loop().time())
        self.delivered.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed.append(code)


@pytest.fixture
async def devices(sessionmaker: async_sessionmaker[AsyncSession]) -> list[VirtualIPMapping]:
    async with sessionmaker() as session:
        org = await make_org(session, network_cidr="100.64.0.0/24")
        user = await make_user(session)
        rows = [
            VirtualIPMapping(
                org_id=org.id,
                user_id=user.id,
                peer_id=f"peer-{index}",
                virtual_ip=f"100.64.0.{index + 1}",
                hostname=f"host{index}",
                credential_lookup=f"lookup{index:010d}",
                credential_hash="0" * 64,
            )
            for index in range(20)
        ]
        session.add_all(rows)
        await session.commit()
        return rows


@asynccontextmanager
async def hub_with_events(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[PresenceHub]:
    """A hub the test drives by hand (its loops not started unless the test starts them),
    with the event reader that tells it what every session's transitions did."""
    engine = sessionmaker.kw["bind"]
    feed = EventFeed(settings.resolved_database_url, poll_interval=settings.event_poll_interval)
    own_sessionmaker = create_sessionmaker(engine, after_commit=feed.after_commit)
    presence = PresenceHub(settings, own_sessionmaker)
    await feed.start(own_sessionmaker, apply=presence.apply_events, reset=presence.reload_view)
    try:
        yield presence
    finally:
        await presence.stop()
        await feed.stop()


@pytest.fixture
async def hub(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[PresenceHub]:
    async with hub_with_events(settings, sessionmaker) as presence:
        yield presence


async def _open(hub: PresenceHub, device: VirtualIPMapping) -> LiveSession:
    protocol = ServerSession(asyncio.get_running_loop().time())
    live = LiveSession(
        device=identity_of(device, "100.64.0.0/24"),
        protocol=protocol,
        transport=FakeTransport(),
        public_ip="203.0.113.9",
        public_port=51820,
        agent_version="test",
    )
    await hub.open_session(live)
    await hub.activate(live)
    return live


@pytest.fixture
def updates(sessionmaker: async_sessionmaker[AsyncSession]) -> Iterator[list[tuple[str, bool]]]:
    """Every UPDATE sent to the database: (table, executemany)."""
    engine = sessionmaker.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    seen: list[tuple[str, bool]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append((statement.split()[1].strip('"'), many))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", record)


async def _end_row_elsewhere(sessionmaker: async_sessionmaker[AsyncSession], row_id: int) -> None:
    """What a replica that took this one for dead does to its row (without an event)."""
    async with sessionmaker() as session:
        await session.execute(
            update(ConnectionStatus)
            .where(ConnectionStatus.id == row_id)
            .values(status="disconnected", disconnected_at=utcnow(), end_reason="server_lost")
        )
        await session.commit()


async def _connection_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[int, ConnectionStatus]:
    async with sessionmaker() as session:
        rows = (await session.execute(select(ConnectionStatus))).scalars().all()
    return {row.id: row for row in rows}


async def test_a_flush_is_one_batched_statement_per_table(
    hub: PresenceHub,
    devices: list[VirtualIPMapping],
    sessionmaker: async_sessionmaker[AsyncSession],
    updates: list[tuple[str, bool]],
) -> None:
    sessions = [await _open(hub, device) for device in devices]
    for live in sessions:
        hub.record_ping(live)
        hub.record_pong(live)
    updates.clear()
    assert await hub.flush() == 20
    assert hub.flush_count == 1
    assert updates == [("connection_status", True), ("virtual_ip_mapping", True)]
    rows = await _connection_rows(sessionmaker)
    for live in sessions:
        row = rows[live.row_id]
        assert (row.last_ping_at, row.last_pong_at) == (live.last_ping_at, live.last_pong_at)
        assert row.last_seen_at == live.last_pong_at
    async with sessionmaker() as session:
        result = await session.execute(select(VirtualIPMapping.id, VirtualIPMapping.last_seen_at))
        seen = {device_id: last_seen for device_id, last_seen in result}
    assert all(seen[live.device.device_id] == live.last_pong_at for live in sessions)
    updates.clear()
    assert await hub.flush() == 0, "nothing new: no write at all"
    assert hub.flush_count == 1
    assert updates == []


async def test_a_flush_never_touches_an_ended_row(
    hub: PresenceHub,
    devices: list[VirtualIPMapping],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ended, live = [await _open(hub, device) for device in devices[:2]]
    hub.record_pong(ended)
    hub.record_pong(live)
    await hub.flush()
    final = (await _connection_rows(sessionmaker))[ended.row_id]
    # Another process ends the row (e.g. a replica that thought this one dead).
    await _end_row_elsewhere(sessionmaker, ended.row_id)
    before = (await _connection_rows(sessionmaker))[ended.row_id]
    await asyncio.sleep(0.01)
    hub.record_ping(ended)
    hub.record_pong(ended)
    hub.record_pong(live)
    assert await hub.flush() == 2
    rows = await _connection_rows(sessionmaker)
    after = rows[ended.row_id]
    assert (after.last_ping_at, after.last_pong_at, after.last_seen_at) == (
        before.last_ping_at,
        before.last_pong_at,
        before.last_seen_at,
    )
    assert after.last_pong_at == final.last_pong_at
    assert (after.status, after.disconnected_at) == ("disconnected", before.disconnected_at)
    assert rows[live.row_id].last_pong_at == live.last_pong_at

    # Ended by the hub itself: the final row carries the last heartbeat, a late pong nothing.
    await hub.end_session(
        live,
        ConnectionState.DISCONNECTED,
        "revoked",
        CloseCode.DEVICE_REVOKED,
        close_transport=True,
    )
    row = (await _connection_rows(sessionmaker))[live.row_id]
    assert (row.status, row.end_reason, row.close_code) == ("disconnected", "revoked", 4004)
    assert row.last_pong_at == live.last_pong_at
    assert isinstance(live.transport, FakeTransport)
    assert live.transport.closed == [4004]
    await asyncio.sleep(0.01)
    hub.record_pong(live)
    await hub.flush()
    assert (await _connection_rows(sessionmaker))[live.row_id].last_pong_at == row.last_pong_at


async def test_the_flush_loop_writes_once_per_interval_not_once_per_pong(
    hub: PresenceHub, devices: list[VirtualIPMapping]
) -> None:
    sessions = [await _open(hub, device) for device in devices[:5]]
    interval = hub.settings.heartbeat_flush_interval
    await hub.start()
    try:
        before = hub.flush_count
        started = time.monotonic()
        pongs = 0
        while time.monotonic() - started < 1.0:
            for live in sessions:
                hub.record_pong(live)
                pongs += 1
            await asyncio.sleep(0.01)
        flushes = hub.flush_count - before
    finally:
        await hub.stop()
    expected = 1.0 / interval  # each flush takes some time too, so a slow machine does fewer
    assert pongs > 10 * expected
    assert 2 <= flushes <= expected + 1, flushes


async def test_a_flush_on_connections_the_database_dropped_is_retried_not_lost(
    backend: str,
    hub: PresenceHub,
    devices: list[VirtualIPMapping],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The pool does not ping before each use; a dropped connection costs one retry."""
    if backend == "sqlite":
        pytest.skip("SQLite has no server that can drop a connection")
    sessions = [await _open(hub, device) for device in devices[:5]]
    for live in sessions:
        hub.record_pong(live)
    assert await hub.flush() == 5
    engine = sessionmaker.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    assert engine.pool.checkedin() >= 1, "the pool holds a connection to lose"
    async with create_async_engine(engine.url, poolclass=NullPool).connect() as admin:
        terminated = await admin.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    assert terminated >= 1
    for live in sessions:
        hub.record_pong(live)
    written = [await hub.flush() for _ in range(2)]
    assert written in ([5, 0], [0, 5]), "written once: now, or by the retry after a failure"
    rows = await _connection_rows(sessionmaker)
    assert all(rows[live.row_id].last_pong_at == live.last_pong_at for live in sessions)


# --- peer deltas: a lone change goes out at once, a burst shares one delta per window ----------


def _delta_peer_ids(transport: FakeTransport) -> list[set[str]]:
    """The peers named in each peers_delta frame this fake transport was sent."""
    deltas = []
    for frame in transport.sent:
        message = decode_server_message(frame)
        if isinstance(message, PeersDeltaMessage):
            deltas.append(
                {
                    change.peer.peer_id if isinstance(change, PeerUpsert) else change.peer_id
                    for change in message.changes
                }
            )
    return deltas


async def test_a_lone_join_is_sent_at_once_and_a_burst_after_it_waits_for_one_shared_delta(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    devices: list[VirtualIPMapping],
) -> None:
    window = 0.3
    quick = settings.model_copy(update={"peer_update_coalesce": window})
    async with hub_with_events(quick, sessionmaker) as hub:
        watcher = await _open(hub, devices[0])
        transport = watcher.transport
        assert isinstance(transport, FakeTransport)
        await asyncio.sleep(window * 1.5)  # the watcher's own join has gone out; all quiet
        transport.sent.clear()
        transport.sent_at.clear()
        transport.delivered.clear()
        loop = asyncio.get_running_loop()

        await _open(hub, devices[1])  # activated: its change is queued
        queued_at = loop.time()
        await asyncio.wait_for(transport.delivered.wait(), 1)
        assert _delta_peer_ids(transport) == [{"peer-1"}]
        assert transport.sent_at[0] - queued_at < window / 3, "a quiet org waits for no window"

        transport.delivered.clear()
        await _open(hub, devices[2])
        await _open(hub, devices[3])
        await asyncio.wait_for(transport.delivered.wait(), 2)
        await asyncio.sleep(window * 1.5)  # nothing else may follow
        assert _delta_peer_ids(transport) == [{"peer-1"}, {"peer-2", "peer-3"}]
        gap = transport.sent_at[1] - transport.sent_at[0]
        assert gap >= window * 0.9, "the burst waited for the window after the last delta"


# --- a session ended by another task while its own loop waits -----------------------------


class _SilentSocket:
    """A WebSocket that never delivers a frame."""

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_session_ended_elsewhere_leaves_its_loop_quietly_at_the_next_ping(
    settings: Settings, hub: PresenceHub, devices: list[VirtualIPMapping]
) -> None:
    """Another task's end_session (superseded, revoked) may still be writing the row when
    this session's ping falls due: the loop must return, not ping a closed session."""
    live = await _open(hub, devices[0])
    now = asyncio.get_running_loop().time()
    live.protocol.receive(auth_frame(), now)
    live.protocol.authenticated(now)
    fast = settings.model_copy(update={"heartbeat_interval": 0.05})
    loop_task = asyncio.create_task(
        _session_loop(_SilentSocket(), hub, live, fast)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.01)
    live.ended = True  # what end_session does first, before its database write
    live.protocol.close(CloseCode.SUPERSEDED)
    await asyncio.sleep(0.2)  # several ping times pass while the other task writes
    assert not loop_task.done(), "it waits for the other task to close the socket"
    live.closed.set()  # what end_session does last
    await asyncio.wait_for(loop_task, 1.0)  # returns; a ping would raise ProtocolError
    assert isinstance(live.transport, FakeTransport)
    assert live.transport.sent == [], "no ping went out"


# --- rows ended by another replica ------------------------------------------------------------


async def _wait_closed(live: LiveSession) -> list[int]:
    transport = live.transport
    assert isinstance(transport, FakeTransport)
    for _ in range(100):
        if transport.closed:
            return transport.closed
        await asyncio.sleep(0.02)
    raise AssertionError("the session was not closed")


async def test_sessions_whose_rows_a_lease_reaper_ended_are_closed_to_reconnect(
    hub: PresenceHub,
    devices: list[VirtualIPMapping],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Another replica took this one for dead (its lease lapsed) and ended its rows: the
    sessions close with 1012 so their agents come back with new rows; the rows say why."""
    sessions = [await _open(hub, device) for device in devices[:2]]
    reaper = ReplicaLeases(sessionmaker, "other-replica", hub.settings.replica_lease_ttl)
    assert await reaper.reap_orphans() == 2
    for live in sessions:
        assert await _wait_closed(live) == [CloseCode.SERVICE_RESTART]
    assert len(hub.registry) == 0
    rows = await _connection_rows(sessionmaker)
    assert {(row.status, row.end_reason) for row in rows.values()} == {
        ("disconnected", "server_lost")
    }


async def test_a_lapsed_lease_closes_sessions_whose_rows_ended_without_an_event(
    hub: PresenceHub,
    devices: list[VirtualIPMapping],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    kept, lost = [await _open(hub, device) for device in devices[:2]]
    await _end_row_elsewhere(sessionmaker, lost.row_id)
    assert await hub.close_sessions_without_rows() == 1
    assert await _wait_closed(lost) == [CloseCode.SERVICE_RESTART]
    assert not kept.ended
    assert await hub.close_sessions_without_rows() == 0


async def test_a_newer_session_on_another_replica_supersedes_this_one(
    hub: PresenceHub,
    devices: list[VirtualIPMapping],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    here = await _open(hub, devices[0])
    elsewhere = SessionHistory(sessionmaker, "other-replica")
    newer = LiveSession(
        device=here.device,
        protocol=ServerSession(asyncio.get_running_loop().time()),
        transport=FakeTransport(),
        public_ip="203.0.113.10",
        public_port=51821,
        agent_version="test",
    )
    await elsewhere.open(newer)
    assert await _wait_closed(here) == [CloseCode.SUPERSEDED]
    rows = await _connection_rows(sessionmaker)
    assert (rows[here.row_id].status, rows[here.row_id].end_reason) == (
        "disconnected",
        "superseded",
    )
    assert rows[newer.row_id].status == "connected"
    assert not hub.is_online(here.device.device_id)
