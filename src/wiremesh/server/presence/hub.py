"""The presence hub: the live state of every agent session this replica owns.

Live state is memory; the database sees three kinds of writes:
- transitions (connect, disconnect, timeout) at once, each in its own transaction, so the
  history is exact;
- heartbeat timestamps (``last_ping_at``, ``last_pong_at``, ``last_seen_at`` and the device's
  ``last_seen_at``) batched: one transaction per flush interval, none on the pong path;
- the safety net: rows left ``connected`` by a process that died are ended at start-up.

Peer changes are coalesced per organization for a short window, encoded once and written to
every socket of the org.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.protocol import (
    CloseCode,
    Device,
    Peer,
    PeerRemove,
    PeerUpsert,
    ServerSession,
    WelcomeMessage,
    close_reason,
    encode,
    encode_peers_delta,
)
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.orgs.models import Organization
from wiremesh.server.presence import repository
from wiremesh.server.presence.loopmonitor import LoopLagMonitor
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus
from wiremesh.server.presence.roster import DeviceIdentity, OrgRoster

logger = logging.getLogger("wiremesh.presence")

DEVICE_SYNC_CHUNK = 500
COALESCE_MEMBERS_PER_BASE = 1000
MAX_COALESCE_WINDOW = 0.5
_EMPTY_PEERS_TAIL = '"peers":[]}'
SEND_TIMEOUT = 5.0
"""A socket that cannot take a frame for this long is closed as stuck."""


class AgentTransport(Protocol):
    """The narrow view the hub has of one agent socket."""

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class LiveSession:
    """One open agent session owned by this replica."""

    __slots__ = (
        "agent_version",
        "connected_at",
        "connection_id",
        "device",
        "ended",
        "last_ping_at",
        "last_pong_at",
        "protocol",
        "public_ip",
        "public_port",
        "row_id",
        "transport",
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
    ) -> None:
        self.connection_id = uuid.uuid4()
        self.row_id = 0
        self.device = device
        self.protocol = protocol
        self.transport = transport
        self.public_ip = public_ip
        self.public_port = public_port
        self.agent_version = agent_version
        self.connected_at = utcnow()
        self.last_ping_at: datetime | None = None
        self.last_pong_at: datetime | None = None
        self.ended = False

    @property
    def endpoint(self) -> str | None:
        """Where peers reach this device's WireGuard: the address we saw, the port it reports."""
        if self.public_ip is None or self.public_port is None:
            return None
        host = f"[{self.public_ip}]" if ":" in self.public_ip else self.public_ip
        return f"{host}:{self.public_port}"

    @property
    def last_seen_at(self) -> datetime:
        return self.last_pong_at or self.connected_at


def peer_of(device: DeviceIdentity, live: LiveSession | None) -> Peer:
    return Peer(
        peer_id=device.peer_id,
        hostname=device.hostname,
        virtual_ip=device.virtual_ip,
        public_key=device.public_key,
        endpoint=live.endpoint if live else None,
        online=live is not None,
    )


def identity_of(device: VirtualIPMapping, network: str) -> DeviceIdentity:
    return DeviceIdentity(
        device_id=device.id,
        org_id=device.org_id,
        user_id=device.user_id,
        peer_id=device.peer_id,
        virtual_ip=device.virtual_ip,
        hostname=device.hostname,
        public_key=device.public_key,
        network=network,
    )


TransitionHook = Callable[
    [AsyncSession, LiveSession, ConnectionState, str, datetime], Awaitable[None]
]
"""Runs inside a transition's transaction: (session, live, new status, reason, when)."""


class PresenceHub:
    """Owns live sessions, the heartbeat flusher and the per-org peer broadcaster."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        on_transition: TransitionHook | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.server_id = settings.replica_id
        self.on_transition = on_transition
        self.by_connection: dict[uuid.UUID, LiveSession] = {}
        self.by_device: dict[int, LiveSession] = {}
        self.by_org: dict[int, dict[int, LiveSession]] = {}
        self._dirty: dict[uuid.UUID, LiveSession] = {}
        self._rosters: dict[int, OrgRoster] = {}
        self._pending_changes: dict[int, dict[str, PeerUpsert | PeerRemove]] = {}
        self._broadcast_handles: dict[int, asyncio.Handle] = {}
        self._last_broadcast_at: dict[int, float] = {}
        self._broadcast_tasks: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._unwritten_ends: list[tuple[LiveSession, repository.SessionEnd]] = []
        self.loop_lag = LoopLagMonitor()
        self.admission = asyncio.Semaphore(max(1, settings.database_pool_size // 2))
        """Sessions being authenticated and recorded at once: half the pool, the rest is
        left for heartbeat flushes, ends and the API."""
        self._stopping = False
        self.flush_count = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Take a lease, end the history other processes left open, start the loops.

        Runs before the server accepts any agent, so no row of a dead process stays
        ``connected`` into the new run.
        """
        await self.renew_lease()
        ended = await self.reconcile_orphans(starting=True)
        if ended:
            logger.info("ended %d connection rows left open by stopped servers", ended)
        self.loop_lag.start()
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="wiremesh-heartbeat-flusher"),
            asyncio.create_task(self._device_sync_loop(), name="wiremesh-device-sync"),
            asyncio.create_task(self._lease_loop(), name="wiremesh-replica-lease"),
        ]

    async def stop(self) -> None:
        """Close every session as ``disconnected`` (server shutdown) and flush what is pending.

        Idempotent: the server calls it before uvicorn closes sockets, the lifespan again.
        """
        if self._stopping:
            return
        self._stopping = True
        for handle in self._broadcast_handles.values():
            handle.cancel()
        self._broadcast_handles.clear()
        await self.loop_lag.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sessions = list(self.by_connection.values())
        for live in sessions:
            live.ended = True
            live.protocol.close(CloseCode.GOING_AWAY)
        # Final heartbeat timestamps, then every row of this replica ends in one statement:
        # one UPDATE per session made a 10,000-agent shutdown take half a minute.
        await self.flush(include_ended=True)
        await self._retry_unwritten_ends()
        async with self.sessionmaker() as session:
            ended = await repository.end_replica_connections(
                session,
                self.server_id,
                reason="server_shutdown",
                close_code=CloseCode.GOING_AWAY,
                at=utcnow(),
            )
            await session.commit()
        logger.info("recorded the end of %d sessions at shutdown", ended)
        self.by_connection.clear()
        self.by_device.clear()
        self.by_org.clear()
        await asyncio.gather(
            *(self._close_transport(live, CloseCode.GOING_AWAY) for live in sessions),
            return_exceptions=True,
        )
        for broadcast in list(self._broadcast_tasks):
            broadcast.cancel()
        async with self.sessionmaker() as session:
            await repository.drop_lease(session, self.server_id)
            await session.commit()

    async def renew_lease(self) -> None:
        async with self.sessionmaker() as session:
            await repository.renew_lease(session, self.server_id, utcnow())
            await session.commit()

    async def reconcile_orphans(self, *, starting: bool = False) -> int:
        """End rows left ``connected`` by server processes that are gone.

        On PostgreSQL several replicas may share the database: a row is an orphan when its
        replica's lease has run out. The embedded SQLite database has one server process,
        so every row not owned by this process is an orphan. Orphans end ``disconnected``
        at the moment they were last seen.
        """
        async with self.sessionmaker() as session:
            count = await self._end_orphans(session, starting=starting)
            await session.commit()
        return count

    async def _end_orphans(self, session: AsyncSession, *, starting: bool = False) -> int:
        """At start-up, rows under this replica's own id are from its previous life (a stable
        ``WIREMESH_SERVER_ID`` makes a restart end them at once, without waiting a lease)."""
        keep = [] if starting else [self.server_id]
        if session.get_bind().dialect.name != "sqlite":
            since = utcnow() - timedelta(seconds=self.settings.replica_lease_ttl)
            others = await repository.live_replicas(session, since)
            keep += [server_id for server_id in others if server_id != self.server_id]
        return await repository.end_orphaned_connections(
            session, keep_server_ids=keep, reason="server_lost"
        )

    async def _lease_loop(self) -> None:
        """Every third of a lease, in one transaction: renew this replica's lease, end what
        dead replicas left, and forget replicas long gone."""
        ttl = self.settings.replica_lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                async with self.sessionmaker() as session:
                    now = utcnow()
                    await repository.renew_lease(session, self.server_id, now)
                    ended = await self._end_orphans(session)
                    await repository.forget_dead_replicas(
                        session, now - timedelta(seconds=max(ttl * 10, 3600))
                    )
                    await session.commit()
                if ended:
                    logger.info("ended %d connection rows of a replica that stopped", ended)
            except Exception:
                logger.exception("renewing the replica lease failed; trying again")

    # ------------------------------------------------------------------ sessions

    async def open_session(self, live: LiveSession) -> str:
        """Record a new session (its own transaction), supersede an older one; the encoded welcome.

        The session joins its org's broadcast set only when the caller has sent the welcome
        (``activate``), so the full list always arrives before the first delta.
        """
        previous = self.by_device.get(live.device.device_id)
        if previous is not None:
            await self.end_session(
                previous,
                ConnectionState.DISCONNECTED,
                "superseded",
                CloseCode.SUPERSEDED,
                close_transport=True,
            )
        device = live.device
        async with self.sessionmaker() as session:
            row = await repository.insert_connection(
                session,
                ConnectionStatus(
                    user_id=device.user_id,
                    org_id=device.org_id,
                    virtual_ip=device.virtual_ip,
                    peer_id=device.peer_id,
                    connection_id=live.connection_id,
                    public_ip=live.public_ip,
                    public_port=live.public_port,
                    status=ConnectionState.CONNECTED.value,
                    connected_at=live.connected_at,
                    last_seen_at=live.connected_at,
                    server_id=self.server_id,
                    agent_version=live.agent_version,
                ),
            )
            await self._run_transition_hook(session, live, ConnectionState.CONNECTED, "connected")
            await session.commit()
            live.row_id = row.id
        roster = await self._roster(device.org_id)
        self.by_connection[live.connection_id] = live
        self.by_device[device.device_id] = live
        welcome = WelcomeMessage(
            connection_id=live.connection_id,
            device=Device(
                peer_id=device.peer_id,
                virtual_ip=device.virtual_ip,
                network=device.network,
                hostname=device.hostname,
            ),
            heartbeat=live.protocol.heartbeat,
            peers=[],
        )
        head = encode(welcome)
        assert head.endswith(_EMPTY_PEERS_TAIL)
        peers = roster.peers_json(device.peer_id, self._peer_now)
        return head[: -len(_EMPTY_PEERS_TAIL)] + '"peers":' + peers + "}"

    def _peer_now(self, device: DeviceIdentity) -> Peer:
        return peer_of(device, self.by_device.get(device.device_id))

    def activate(self, live: LiveSession) -> None:
        """The welcome is out: receive deltas from now on, and tell the org this one is online."""
        if live.ended:
            return
        self.by_org.setdefault(live.device.org_id, {})[live.device.device_id] = live
        self.queue_peer_change(live.device.org_id, PeerUpsert(peer=peer_of(live.device, live)))

    async def end_session(
        self,
        live: LiveSession,
        status: ConnectionState,
        reason: str,
        close_code: int | None,
        *,
        close_transport: bool,
        announce: bool = True,
    ) -> None:
        """End a session once: write the final row, tell the org, close the socket if asked."""
        if live.ended:
            return
        live.ended = True
        live.protocol.close(
            CloseCode(close_code) if close_code in _CLOSE_CODES else CloseCode.NORMAL
        )
        self.by_connection.pop(live.connection_id, None)
        self._dirty.pop(live.connection_id, None)
        device = live.device
        if self.by_device.get(device.device_id) is live:
            del self.by_device[device.device_id]
        org_sessions = self.by_org.get(device.org_id)
        if org_sessions is not None and org_sessions.get(device.device_id) is live:
            del org_sessions[device.device_id]
            if not org_sessions:
                del self.by_org[device.org_id]
        # History first: once the agent sees the close, the row already says how it ended.
        if live.row_id:
            await self._write_end(live, status, reason, close_code)
        if close_transport:
            await self._close_transport(live, close_code or CloseCode.NORMAL)
        if announce and device.device_id not in self.by_device:
            self.queue_peer_change(device.org_id, PeerUpsert(peer=peer_of(device, None)))

    async def _write_end(
        self, live: LiveSession, status: ConnectionState, reason: str, close_code: int | None
    ) -> None:
        at = utcnow()
        end = repository.SessionEnd(
            row_id=live.row_id,
            device_id=live.device.device_id,
            status=status,
            at=at,
            end_reason=reason,
            close_code=close_code,
            last_ping_at=live.last_ping_at,
            last_pong_at=live.last_pong_at,
            last_seen_at=live.last_seen_at,
        )
        if not await self._record_end(live, end):
            # Kept and written again by the flusher: the history must not lose this end.
            self._unwritten_ends.append((live, end))

    async def _record_end(self, live: LiveSession, end: repository.SessionEnd) -> bool:
        try:
            async with self.sessionmaker() as session:
                ended = await repository.end_connection(session, end)
                if ended:
                    await self._run_transition_hook(session, live, end.status, end.end_reason)
                await session.commit()
        except Exception:
            logger.exception(
                "could not record the end of connection %s (%s); will retry",
                live.connection_id,
                end.end_reason,
            )
            return False
        return True

    async def _run_transition_hook(
        self, session: AsyncSession, live: LiveSession, status: ConnectionState, reason: str
    ) -> None:
        """The hook (alert mails) shares the transition's transaction inside a savepoint: if
        it fails, its writes are undone and logged, and the transition is still recorded."""
        if self.on_transition is None:
            return
        try:
            async with session.begin_nested():
                await self.on_transition(session, live, status, reason, utcnow())
        except Exception:
            logger.exception(
                "the %s hook of connection %s failed; the transition is kept",
                status.value,
                live.connection_id,
            )

    async def _retry_unwritten_ends(self) -> None:
        pending, self._unwritten_ends = self._unwritten_ends, []
        for index, (live, end) in enumerate(pending):
            if not await self._record_end(live, end):
                self._unwritten_ends.extend(pending[index:])
                return

    async def _close_transport(self, live: LiveSession, code: int) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await live.transport.close(code, close_reason(code))
        except Exception as exc:  # the socket may already be gone; nothing is lost
            logger.debug("closing connection %s: %r", live.connection_id, exc)

    async def disconnect_device(
        self, device_id: int, code: CloseCode, reason: str, *, removed: bool
    ) -> bool:
        """Close a device's session (revoked, deleted); ``removed`` tells peers to drop it."""
        live = self.by_device.get(device_id)
        if live is not None:
            await self.end_session(
                live,
                ConnectionState.DISCONNECTED,
                reason,
                code,
                close_transport=True,
                announce=not removed,
            )
        return live is not None

    async def update_endpoint(self, live: LiveSession, listen_port: int) -> None:
        """The agent's WireGuard port changed: record it and tell its peers."""
        if live.public_port == listen_port:
            return
        live.public_port = listen_port
        async with self.sessionmaker() as session:
            await repository.set_public_port(session, live.row_id, listen_port)
            await session.commit()
        self.queue_peer_change(live.device.org_id, PeerUpsert(peer=peer_of(live.device, live)))

    def refresh_device(self, identity: DeviceIdentity) -> None:
        """A device's name or key changed: live sessions and peers see the new values."""
        live = self.by_device.get(identity.device_id)
        if live is not None:
            live.device = identity
        self.queue_peer_change(identity.org_id, PeerUpsert(peer=peer_of(identity, live)), identity)

    async def remove_device(
        self, org_id: int, device_id: int, peer_id: str, code: CloseCode
    ) -> None:
        """A device was revoked or deleted: close its session, drop it from every peer."""
        reason = "revoked" if code == CloseCode.DEVICE_REVOKED else code.name.lower()
        await self.disconnect_device(device_id, code, reason, removed=True)
        self.queue_peer_change(org_id, PeerRemove(peer_id=peer_id))

    def is_online(self, device_id: int) -> bool:
        return device_id in self.by_device

    # ------------------------------------------------------------------ heartbeat

    @property
    def pending_heartbeats(self) -> int:
        return len(self._dirty)

    def record_ping(self, live: LiveSession) -> None:
        live.last_ping_at = utcnow()
        self._dirty[live.connection_id] = live

    def record_pong(self, live: LiveSession) -> None:
        live.last_pong_at = utcnow()
        self._dirty[live.connection_id] = live

    async def flush(self, *, include_ended: bool = False) -> int:
        """Write the heartbeat timestamps gathered since the last flush: one transaction."""
        if not self._dirty:
            return 0
        batch = list(self._dirty.values())
        self._dirty = {}
        connections = [
            {
                "row_id": live.row_id,
                "ping_at": live.last_ping_at,
                "pong_at": live.last_pong_at,
                "seen_at": live.last_seen_at,
            }
            for live in batch
        ]
        devices = [
            {"device_id": live.device.device_id, "seen_at": live.last_pong_at}
            for live in batch
            if live.last_pong_at is not None
        ]
        try:
            async with self.sessionmaker() as session:
                await repository.flush_heartbeats(session, connections, devices)
                await session.commit()
        except Exception:
            logger.exception(
                "heartbeat flush of %d sessions failed; retrying next time", len(batch)
            )
            for live in batch:
                if include_ended or not live.ended:
                    self._dirty.setdefault(live.connection_id, live)
            return 0
        self.flush_count += 1
        return len(batch)

    async def _flush_loop(self) -> None:
        interval = self.settings.heartbeat_flush_interval
        while True:
            await asyncio.sleep(interval)
            await self.flush()
            if self._unwritten_ends:
                await self._retry_unwritten_ends()

    async def sync_devices(self) -> int:
        """Close sessions whose device was revoked or deleted elsewhere (CLI, another replica).

        The API closes them at once on this replica; this catches every other path within
        ``device_sync_interval``. Returns how many sessions were closed.
        """
        live_ids = list(self.by_device)
        if not live_ids:
            return 0
        valid: set[int] = set()
        # One read transaction however many agents are live: chunks only keep each
        # statement's parameter list within what every backend accepts.
        async with self.sessionmaker() as session:
            for start in range(0, len(live_ids), DEVICE_SYNC_CHUNK):
                chunk = live_ids[start : start + DEVICE_SYNC_CHUNK]
                valid.update(
                    (
                        await session.execute(
                            select(VirtualIPMapping.id).where(
                                VirtualIPMapping.id.in_(chunk),
                                VirtualIPMapping.revoked_at.is_(None),
                            )
                        )
                    ).scalars()
                )
        closed = 0
        for device_id in live_ids:
            live = self.by_device.get(device_id)
            if device_id in valid or live is None:
                continue
            await self.remove_device(
                live.device.org_id, device_id, live.device.peer_id, CloseCode.DEVICE_REVOKED
            )
            closed += 1
        return closed

    async def _device_sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.device_sync_interval)
            try:
                await self.sync_devices()
            except Exception:
                logger.exception("checking live sessions against revoked devices failed")

    # ------------------------------------------------------------------ peers

    async def _roster(self, org_id: int) -> OrgRoster:
        """The org's roster, re-read from the database when it is older than its TTL."""
        now = asyncio.get_running_loop().time()
        roster = self._rosters.get(org_id)
        if roster is not None and roster.is_fresh(now):
            return roster
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(VirtualIPMapping, Organization.network_cidr)
                    .join(Organization, Organization.id == VirtualIPMapping.org_id)
                    .where(VirtualIPMapping.org_id == org_id, VirtualIPMapping.revoked_at.is_(None))
                )
            ).all()
        devices = [identity_of(device, network) for device, network in rows]
        roster = self._rosters.get(org_id)
        if roster is None:
            roster = self._rosters[org_id] = OrgRoster(org_id=org_id, loaded_at=now)
        roster.replace(devices, now)
        return roster

    def queue_peer_change(
        self,
        org_id: int,
        change: PeerUpsert | PeerRemove,
        identity: DeviceIdentity | None = None,
    ) -> None:
        """Coalesce a change into the org's next delta (a later change of a peer wins)."""
        if self._stopping:
            return
        roster = self._rosters.get(org_id)
        if isinstance(change, PeerUpsert):
            peer_id = change.peer.peer_id
            if roster is not None:
                roster.record(change.peer, identity)
        else:
            peer_id = change.peer_id
            if roster is not None:
                roster.forget(peer_id)
        self._pending_changes.setdefault(org_id, {})[peer_id] = change
        if org_id not in self._broadcast_handles:
            # Leading and trailing edge: a change in a quiet org goes out in this loop
            # iteration; changes that follow within the window wait for its end and share
            # one delta. So a lone join costs no delay and a storm one delta per window.
            loop = asyncio.get_running_loop()
            quiet_at = self._last_broadcast_at.get(org_id, -math.inf)
            quiet_at += self._coalesce_window(org_id)
            delay = quiet_at - loop.time()
            self._broadcast_handles[org_id] = (
                loop.call_later(delay, self._start_broadcast, org_id)
                if delay > 0
                else loop.call_soon(self._start_broadcast, org_id)
            )

    def _coalesce_window(self, org_id: int) -> float:
        """Wider windows for larger orgs: a delta costs one write per member, so a storm of
        changes in a 10,000-device org is sent as a few large deltas, not thousands."""
        base = self.settings.peer_update_coalesce
        members = len(self.by_org.get(org_id, ()))
        return min(max(base, base * members / COALESCE_MEMBERS_PER_BASE), MAX_COALESCE_WINDOW)

    def _start_broadcast(self, org_id: int) -> None:
        self._broadcast_handles.pop(org_id, None)
        changes = self._pending_changes.pop(org_id, None)
        if not changes:
            return
        self._last_broadcast_at[org_id] = asyncio.get_running_loop().time()
        task = asyncio.create_task(self._broadcast(org_id, changes))
        self._broadcast_tasks.add(task)
        task.add_done_callback(self._broadcast_tasks.discard)

    async def _broadcast(self, org_id: int, changes: dict[str, PeerUpsert | PeerRemove]) -> None:
        """Encode the delta once; a recipient named in it gets a copy without its own entry."""
        recipients = list(self.by_org.get(org_id, {}).values())
        if not recipients:
            return
        shared_frame = encode_peers_delta(changes.values())
        # In turn, not gathered: a write to a socket that is not backed up completes without
        # suspending, so one task beats ten thousand; a stuck socket is cut at SEND_TIMEOUT.
        for live in recipients:
            await self._send_delta(live, changes, shared_frame)

    async def _send_delta(
        self, live: LiveSession, changes: dict[str, PeerUpsert | PeerRemove], shared_frame: str
    ) -> None:
        frame = shared_frame
        if live.device.peer_id in changes:
            others = [c for peer_id, c in changes.items() if peer_id != live.device.peer_id]
            if not others:
                return
            frame = encode_peers_delta(others)
        await self.send(live, frame)

    async def send(self, live: LiveSession, frame: str) -> bool:
        """Write one frame; a socket that is stuck or gone ends its session."""
        if live.ended:
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await live.transport.send(frame)
        except Exception as exc:
            logger.info("dropping connection %s: send failed (%r)", live.connection_id, exc)
            await self.end_session(
                live,
                ConnectionState.DISCONNECTED,
                "send_failed",
                CloseCode.INTERNAL_ERROR,
                close_transport=True,
            )
            return False
        return True

    def online_sessions(self, org_id: int | None = None) -> Iterable[LiveSession]:
        if org_id is None:
            return list(self.by_connection.values())
        return list(self.by_org.get(org_id, {}).values())


_CLOSE_CODES = {int(code) for code in CloseCode}
