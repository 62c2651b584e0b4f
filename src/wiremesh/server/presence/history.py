"""Connection history: each session's row opened, its heartbeats flushed in batches, its end
written exactly once (retried until the database takes it), and each transition told to
every replica as an event in the same transaction.

Transitions are written at once, each in its own transaction, so the history is exact;
heartbeat timestamps are batched: one transaction per flush interval, none on the pong path.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.protocol import CloseCode
from wiremesh.server.db.base import utcnow
from wiremesh.server.events import recorder
from wiremesh.server.events.schemas import EndpointChanged, SessionEnded, SessionOpened
from wiremesh.server.paths import repository as paths_repository
from wiremesh.server.presence import repository
from wiremesh.server.presence.models import ConnectionState
from wiremesh.server.presence.sessions import LiveSession

logger = logging.getLogger("wiremesh.presence")

OPEN_ATTEMPTS = 3
"""Two replicas opening a session of one device at once: the unique index refuses one,
which ends the other's row and tries again (the newer session wins)."""

TransitionHook = Callable[
    [AsyncSession, LiveSession, ConnectionState, str, datetime], Awaitable[None]
]
"""Runs inside a transition's transaction: (session, live, new status, reason, when)."""


def ended_events(rows: Iterable[repository.EndedRow], reason: str) -> list[SessionEnded]:
    return [
        SessionEnded(
            org_id=row.org_id,
            peer_id=row.peer_id,
            connection_id=row.connection_id,
            server_id=row.server_id,
            reason=reason,
        )
        for row in rows
    ]


class SessionHistory:
    """The ``connection_status`` rows of this replica's sessions."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        server_id: str,
        *,
        on_transition: TransitionHook | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.server_id = server_id
        self.on_transition = on_transition
        self._dirty: dict[uuid.UUID, LiveSession] = {}
        self._unwritten_ends: list[tuple[LiveSession, repository.SessionEnd]] = []
        self.flush_count = 0

    # ------------------------------------------------------------------ transitions

    async def open(self, live: LiveSession) -> None:
        """Write the session's row and end any other live row of the device, wherever it is."""
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            try:
                await self._open_once(live)
                return
            except IntegrityError:
                if attempt == OPEN_ATTEMPTS:
                    raise
                logger.info("device %s opened elsewhere at once; retrying", live.device.peer_id)

    async def _open_once(self, live: LiveSession) -> None:
        device = live.device
        async with self.sessionmaker() as session:
            superseded = await repository.supersede_live_rows(
                session, device.org_id, device.peer_id, live.connected_at
            )
            row_id = await repository.insert_connection(
                session,
                {
                    "user_id": device.user_id,
                    "org_id": device.org_id,
                    "virtual_ip": device.virtual_ip,
                    "peer_id": device.peer_id,
                    "connection_id": live.connection_id,
                    "public_ip": live.public_ip,
                    "public_port": live.public_port,
                    "status": ConnectionState.CONNECTED.value,
                    "connected_at": live.connected_at,
                    "last_ping_at": live.last_ping_at,
                    "last_pong_at": live.last_pong_at,
                    "last_seen_at": live.connected_at,
                    "server_id": self.server_id,
                    "agent_version": live.agent_version,
                },
            )
            await self._run_transition_hook(session, live, ConnectionState.CONNECTED, "connected")
            await recorder.record(
                session,
                *ended_events(superseded, "superseded"),
                SessionOpened(
                    org_id=device.org_id,
                    peer_id=device.peer_id,
                    connection_id=live.connection_id,
                    server_id=self.server_id,
                    public_ip=live.public_ip,
                    public_port=live.public_port,
                    lan=list(live.lan),
                ),
            )
            if live.protocol_version >= 2:
                await paths_repository.set_lan(session, device.device_id, device.org_id, live.lan)
            await session.commit()
            live.row_id = row_id
        # The next flush writes the device's last_seen_at, in its batch.
        self._dirty[live.connection_id] = live

    async def end(
        self, live: LiveSession, status: ConnectionState, reason: str, close_code: int | None
    ) -> None:
        """Write how the session ended; kept and retried by the flusher if the write fails."""
        self._dirty.pop(live.connection_id, None)
        if not live.row_id:
            return
        end = repository.SessionEnd(
            row_id=live.row_id,
            device_id=live.device.device_id,
            status=status,
            at=utcnow(),
            end_reason=reason,
            close_code=close_code,
            last_ping_at=live.last_ping_at,
            last_pong_at=live.last_pong_at,
            last_seen_at=live.last_seen_at,
        )
        if not await self._record_end(live, end):
            self._unwritten_ends.append((live, end))

    def forget(self, live: LiveSession) -> None:
        """Another replica ended this session's row: nothing of it is written any more."""
        self._dirty.pop(live.connection_id, None)

    async def _record_end(self, live: LiveSession, end: repository.SessionEnd) -> bool:
        try:
            async with self.sessionmaker() as session:
                if await repository.end_connection(session, end):
                    await self._run_transition_hook(session, live, end.status, end.end_reason)
                    row = repository.EndedRow(
                        live.device.org_id,
                        live.device.peer_id,
                        live.connection_id,
                        self.server_id,
                    )
                    await recorder.record(session, *ended_events([row], end.end_reason))
                await session.commit()
        except Exception:
            logger.exception(
                "could not record the end of connection %s (%s); will retry",
                live.connection_id,
                end.end_reason,
            )
            return False
        return True

    async def retry_unwritten_ends(self) -> None:
        pending, self._unwritten_ends = self._unwritten_ends, []
        for index, (live, end) in enumerate(pending):
            if not await self._record_end(live, end):
                self._unwritten_ends.extend(pending[index:])
                return

    @property
    def has_unwritten_ends(self) -> bool:
        return bool(self._unwritten_ends)

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

    async def set_endpoint(self, live: LiveSession, listen_port: int) -> None:
        """The agent's WireGuard port changed: record it and tell every replica."""
        live.public_port = listen_port
        device = live.device
        async with self.sessionmaker() as session:
            if await repository.set_public_port(session, live.row_id, listen_port):
                await recorder.record(
                    session,
                    EndpointChanged(
                        org_id=device.org_id,
                        peer_id=device.peer_id,
                        connection_id=live.connection_id,
                        public_ip=live.public_ip,
                        public_port=listen_port,
                    ),
                )
            await session.commit()

    async def end_all(self, *, reason: str, close_code: CloseCode) -> int:
        """End every live row of this replica in one statement (its orderly shutdown)."""
        async with self.sessionmaker() as session:
            ended = await repository.end_replica_connections(
                session, self.server_id, reason=reason, close_code=close_code, at=utcnow()
            )
            await recorder.record(session, *ended_events(ended, reason))
            await session.commit()
        return len(ended)

    # ------------------------------------------------------------------ heartbeats

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
