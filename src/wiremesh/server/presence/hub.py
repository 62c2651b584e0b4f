"""The presence hub: this replica's agent sessions, and the organization-wide view they see.

It composes the parts, each in its own module:
- ``sessions``: the live sessions this replica owns (memory only);
- ``history``: their ``connection_status`` rows, transitions at once, heartbeats batched;
- ``directory`` and ``roster``: every org's devices and who is online on any replica,
  moved only by events, so welcomes and deltas are the same whichever replica serves them;
- ``fanout``: coalesced peer deltas written to this replica's sessions;
- ``leases``: which replicas are alive, on the database clock;
- ``devicesync``: the safety net that closes sessions of devices removed unseen.

Changes reach it as events (``apply_events``), whichever replica, endpoint or command made
them: a revoked device is closed here within the event reader's wake-up, not by a poke.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.protocol import (
    CloseCode,
    Device,
    PathsMessage,
    Relay,
    RelaysMessage,
    WelcomeMessage,
    close_reason,
    encode,
)
from wiremesh.protocol.messages import V2_ONLY_WELCOME_FIELDS
from wiremesh.server.config import Settings
from wiremesh.server.events.schemas import (
    AnyEvent,
    DeviceChanged,
    DeviceRemoved,
    OrgDeleted,
    RelayChanged,
    SessionEnded,
)
from wiremesh.server.metrics.recorder import ServerMetrics
from wiremesh.server.paths import service as paths_service
from wiremesh.server.presence.devicesync import close_sessions_of_removed_devices
from wiremesh.server.presence.directory import OrgDirectory, identity_from_event
from wiremesh.server.presence.fanout import PeerFanout
from wiremesh.server.presence.history import SessionHistory, TransitionHook
from wiremesh.server.presence.leases import ReplicaLeases
from wiremesh.server.presence.loopmonitor import LoopLagMonitor
from wiremesh.server.presence.models import ConnectionState
from wiremesh.server.presence.relays import RelayBoard
from wiremesh.server.presence.roster import DeviceIdentity
from wiremesh.server.presence.sessions import LiveSession, SessionRegistry
from wiremesh.server.presence.supersede import LOOP_WINDOW, SupersedeWatch

logger = logging.getLogger("wiremesh.presence")

SEND_TIMEOUT = 5.0
"""A socket that cannot take a frame for this long is closed as stuck."""

_REMOVAL_REASONS = {"device_revoked": "revoked", "device_deleted": "deleted"}


class PresenceHub:
    """Owns this replica's sessions; applies every replica's events to what they see."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        on_transition: TransitionHook | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.server_id = settings.replica_id
        self.metrics = metrics or ServerMetrics(self.server_id)
        self.registry = SessionRegistry()
        self.history = SessionHistory(sessionmaker, self.server_id, on_transition=on_transition)
        self.directory = OrgDirectory(sessionmaker)
        self.fanout = PeerFanout(
            self.registry,
            self.send,
            settings.peer_update_coalesce,
            on_delivered=self.metrics.delta_fanned_out,
        )
        self.supersedes = SupersedeWatch()
        self.leases = ReplicaLeases(sessionmaker, self.server_id, settings.replica_lease_ttl)
        self.loop_lag = LoopLagMonitor()
        self.admission_limit = max(1, settings.database_pool_size // 2)
        self.admission = asyncio.Semaphore(self.admission_limit)
        """Sessions being authenticated and recorded at once: half the pool, the rest is
        left for heartbeat flushes, ends and the API."""
        self.admission_waiting = 0
        """Sockets that sent their auth and wait for an admission slot (a metric)."""
        self.relay_board = RelayBoard(sessionmaker)
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[bool]] = set()
        self.started = False
        self.stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Take a lease, end the history stopped processes left open, start the loops.

        Runs before the server accepts any agent, so no row of a dead process stays
        ``connected`` into the new run.
        """
        ended = await self.leases.start()
        if ended:
            logger.info("ended %d connection rows left open by stopped servers", ended)
        await self.relay_board.load()
        self.loop_lag.start()
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="wiremesh-heartbeat-flusher"),
            asyncio.create_task(self._device_sync_loop(), name="wiremesh-device-sync"),
            asyncio.create_task(self._lease_loop(), name="wiremesh-replica-lease"),
        ]
        if self.settings.relay_token is not None or self.relays:
            self.relay_board.start_sweep()
        self.started = True

    @property
    def relays(self) -> dict[str, Relay]:
        """The relays that are up, by name."""
        return self.relay_board.up

    async def stop(self) -> None:
        """Close every session as ``disconnected`` (server shutdown) and flush what is pending.

        Idempotent: the server calls it before uvicorn closes sockets, the lifespan again.
        """
        if self.stopping:
            return
        self.stopping = True
        self.fanout.stop()
        await self.loop_lag.stop()
        await self.relay_board.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sessions = list(self.registry.all())
        for live in sessions:
            live.ended = True
            live.protocol.close(CloseCode.GOING_AWAY)
        # Final heartbeat timestamps, then every row of this replica ends in one statement:
        # one UPDATE per session made a 10,000-agent shutdown take half a minute.
        await self.history.flush(include_ended=True)
        await self.history.retry_unwritten_ends()
        ended = await self.history.end_all(
            reason="server_shutdown", close_code=CloseCode.GOING_AWAY
        )
        for live in sessions:
            self._log_end(
                live, ConnectionState.DISCONNECTED, "server_shutdown", CloseCode.GOING_AWAY
            )
        logger.info("recorded the end of %d sessions at shutdown", ended)
        self.registry.clear()
        await asyncio.gather(
            *(self._close_transport(live, CloseCode.GOING_AWAY) for live in sessions),
            return_exceptions=True,
        )
        for live in sessions:
            live.closed.set()
        if self.started:
            await self.leases.drop()

    async def _lease_loop(self) -> None:
        """Every third of a lease: renew, end what dead replicas left; if this replica's own
        lease had lapsed, close the sessions whose rows others ended meanwhile."""
        while True:
            await asyncio.sleep(self.settings.replica_lease_ttl / 3)
            try:
                ended, lapsed = await self.leases.tick()
                if ended:
                    logger.info("ended %d connection rows of a replica that stopped", ended)
                if lapsed:
                    logger.warning("this replica's lease had lapsed; checking its sessions")
                    await self.close_sessions_without_rows()
            except Exception:
                logger.exception("renewing the replica lease failed; trying again")

    async def close_sessions_without_rows(self) -> int:
        """Close sessions whose row another replica ended (it took this one for dead), so
        their agents reconnect and get new rows."""
        registered = [live for live in self.registry.all() if live.row_id]
        live_ids = await self.leases.live_connection_ids()
        lost = [live for live in registered if live.connection_id not in live_ids]
        for live in lost:
            await self.end_session(
                live,
                ConnectionState.DISCONNECTED,
                "server_lost",
                CloseCode.SERVICE_RESTART,
                close_transport=True,
                write=False,
            )
        if lost:
            logger.warning("closed %d sessions whose rows were ended elsewhere", len(lost))
        return len(lost)

    # ------------------------------------------------------------------ sessions

    async def open_session(self, live: LiveSession) -> str:
        """Record a new session, superseding any older one of the device; the encoded welcome.

        From here on the session receives its org's deltas, held back until ``activate``
        (the welcome is out), so the full list always arrives first and nothing is missed.
        """
        previous = self.registry.by_device.get(live.device.device_id)
        if previous is not None:
            self._note_supersede(previous)
            await self.end_session(
                previous,
                ConnectionState.DISCONNECTED,
                "superseded",
                CloseCode.SUPERSEDED,
                close_transport=True,
            )
        device = live.device
        roster = await self.directory.roster(device.org_id)
        await self.history.open(live)
        self.metrics.session_opened()
        logger.info(
            "session opened: device %s (%s, %s) of org %d from %s, agent %s, connection %s",
            device.peer_id,
            device.hostname,
            device.virtual_ip,
            device.org_id,
            live.endpoint or "unknown address",
            live.agent_version or "unknown",
            live.connection_id,
            extra={
                "event": "session_opened",
                "peer_id": device.peer_id,
                "org_id": device.org_id,
                "virtual_ip": device.virtual_ip,
                "public_ip": live.public_ip,
                "connection_id": str(live.connection_id),
            },
        )
        # No await from here to the return: the welcome reflects every event applied so
        # far, and every later one reaches this session's backlog.
        self.registry.add(live)
        version = live.protocol_version
        welcome = WelcomeMessage(
            version=version,
            connection_id=live.connection_id,
            device=Device(
                peer_id=device.peer_id,
                virtual_ip=device.virtual_ip,
                network=device.network,
                hostname=device.hostname,
            ),
            heartbeat=live.protocol.heartbeat,
            relays=self.relay_list(),
            public_ip=live.public_ip,
            peers=[],
        )
        # peers last, so the cached peer list is spliced in without encoding it again
        exclude = set(V2_ONLY_WELCOME_FIELDS) if version < 2 else set()
        head = welcome.model_dump_json(exclude=exclude | {"peers"})
        peers = roster.peers_json(device.peer_id, version)
        return head[:-1] + ',"peers":' + peers + "}"

    def _note_supersede(self, previous: LiveSession) -> None:
        count = self.supersedes.superseded(previous.device.device_id)
        if count is not None:
            logger.warning(
                "device %s (%s) of org %d: %d sessions replaced one another within %.0f s; "
                "two agents may be running with one credential (a copied state directory)",
                previous.device.peer_id,
                previous.device.hostname,
                previous.device.org_id,
                count,
                LOOP_WINDOW,
                extra={
                    "event": "supersede_loop",
                    "peer_id": previous.device.peer_id,
                    "org_id": previous.device.org_id,
                },
            )

    def relay_list(self) -> list[Relay]:
        """The relays up, in the order agents prefer them."""
        return self.relay_board.ordered()

    async def activate(self, live: LiveSession) -> None:
        """The welcome is out: send the deltas held meanwhile, then receive them directly."""
        while live.backlog and not live.ended:
            frames, live.backlog = live.backlog, []
            for frame in frames:
                if not await self.send(live, frame):
                    return
        live.welcomed = True

    async def end_session(
        self,
        live: LiveSession,
        status: ConnectionState,
        reason: str,
        close_code: int | None,
        *,
        close_transport: bool,
        write: bool = True,
    ) -> None:
        """End a session once: write the final row (unless another already ended it), close
        the socket if asked. Peers learn it from the row's event, on every replica."""
        if live.ended:
            return
        live.ended = True
        live.protocol.close(
            CloseCode(close_code) if close_code in _CLOSE_CODES else CloseCode.NORMAL
        )
        self.registry.remove(live)
        self._log_end(live, status, reason, close_code)
        # History first: once the agent sees the close, the row already says how it ended.
        try:
            if write:
                await self.history.end(live, status, reason, close_code)
            else:
                self.history.forget(live)
            if close_transport:
                await self._close_transport(live, close_code or CloseCode.NORMAL)
        finally:
            live.closed.set()

    def _log_end(
        self, live: LiveSession, status: ConnectionState, reason: str, close_code: int | None
    ) -> None:
        self.metrics.session_ended(status.value, reason)
        device = live.device
        level = logging.WARNING if status == ConnectionState.TIMEOUT else logging.INFO
        logger.log(
            level,
            "session ended: device %s (%s, %s) of org %d from %s: %s, %s, close code %s, "
            "connection %s",
            device.peer_id,
            device.hostname,
            device.virtual_ip,
            device.org_id,
            live.endpoint or "unknown address",
            status.value,
            reason,
            close_code if close_code is not None else "none",
            live.connection_id,
            extra={
                "event": "session_ended",
                "peer_id": device.peer_id,
                "org_id": device.org_id,
                "virtual_ip": device.virtual_ip,
                "public_ip": live.public_ip,
                "connection_id": str(live.connection_id),
                "status": status.value,
                "reason": reason,
                "close_code": close_code,
            },
        )

    async def _close_transport(self, live: LiveSession, code: int) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await live.transport.close(code, close_reason(code))
        except Exception as exc:  # the socket may already be gone; nothing is lost
            logger.debug("closing connection %s: %r", live.connection_id, exc)

    async def update_endpoint(self, live: LiveSession, listen_port: int) -> None:
        """The agent's WireGuard port changed: record it; peers learn it from the event."""
        if live.public_port != listen_port:
            await self.history.set_endpoint(live, listen_port)

    async def report_paths(self, live: LiveSession, message: PathsMessage) -> None:
        """Store the agent's paths report in one transaction.

        The socket waits meanwhile, as for an endpoint change. A database failure costs
        this report only: the paths are a view, the session need not end for it.
        """
        device = live.device
        try:
            async with self.sessionmaker() as session:
                await paths_service.store_report(
                    session, device.device_id, device.org_id, device.peer_id, message
                )
                await session.commit()
        except SQLAlchemyError as exc:
            logger.warning("could not store the paths of %s: %r", device.peer_id, exc)

    def is_online(self, device_id: int) -> bool:
        """Whether this replica holds a live session of the device."""
        return device_id in self.registry.by_device

    def online_sessions(self, org_id: int | None = None) -> Iterable[LiveSession]:
        return self.registry.all() if org_id is None else self.registry.of_org(org_id)

    # ------------------------------------------------------------------ events

    async def apply_events(self, events: Sequence[AnyEvent]) -> None:
        """The event reader's callback: update every org's view, tell this replica's
        sessions, and act on what concerns them. Never raises."""
        if self.stopping:
            return
        for change in self.directory.apply(events):
            self.fanout.queue(change.org_id, change.change)
        if any(isinstance(event, RelayChanged) for event in events):
            self._apply_relay_events(events)
        for event in events:
            try:
                await self._act_on(event)
            except Exception:
                logger.exception("applying event %d (%s) failed", event.id, event.kind)

    async def _act_on(self, event: AnyEvent) -> None:
        match event:
            case DeviceRemoved():
                live = self.registry.by_device.get(event.device_id)
                if live is not None:
                    await self.end_session(
                        live,
                        ConnectionState.DISCONNECTED,
                        _REMOVAL_REASONS[event.kind],
                        CloseCode.DEVICE_REVOKED,
                        close_transport=True,
                    )
            case OrgDeleted():
                for live in self.registry.of_org(event.org_id):
                    await self.end_session(
                        live,
                        ConnectionState.DISCONNECTED,
                        "org_deleted",
                        CloseCode.DEVICE_REVOKED,
                        close_transport=True,
                    )
            case SessionEnded():
                live = self.registry.by_connection.get(event.connection_id)
                if live is not None and not live.ended:
                    # Its row was ended by another replica: a newer session of the device,
                    # or a lease reaper that took this replica for dead.
                    superseded = event.reason == "superseded"
                    await self.end_session(
                        live,
                        ConnectionState.DISCONNECTED,
                        event.reason,
                        CloseCode.SUPERSEDED if superseded else CloseCode.SERVICE_RESTART,
                        close_transport=True,
                        write=False,
                    )
            case DeviceChanged():
                live = self.registry.by_device.get(event.device_id)
                if live is not None:
                    live.device = identity_from_event(event)
            case _:
                pass

    def _apply_relay_events(self, events: Sequence[AnyEvent]) -> None:
        after = self.relay_board.apply(events, may_sweep=self.started and not self.stopping)
        if after is None:
            return
        logger.info("relays up: %s", ", ".join(relay.name for relay in after) or "none")
        frame = encode(RelaysMessage(relays=after))
        for live in self.registry.all():
            if live.protocol_version < 2:
                continue
            if live.welcomed:
                task = asyncio.create_task(self.send(live, frame))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            else:
                live.backlog.append(frame)

    async def reload_view(self) -> None:
        """Events were missed: rebuild every org's view and send what differs."""
        for change in await self.directory.reload():
            self.fanout.queue(change.org_id, change.change)

    # ------------------------------------------------------------------ heartbeat

    @property
    def pending_heartbeats(self) -> int:
        return self.history.pending_heartbeats

    @property
    def flush_count(self) -> int:
        return self.history.flush_count

    def record_ping(self, live: LiveSession) -> None:
        self.history.record_ping(live)

    def record_pong(self, live: LiveSession) -> None:
        self.history.record_pong(live)

    async def flush(self, *, include_ended: bool = False) -> int:
        return await self.history.flush(include_ended=include_ended)

    async def _flush_loop(self) -> None:
        interval = self.settings.heartbeat_flush_interval
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            started = loop.time()
            flushed = await self.history.flush()
            if flushed:
                self.metrics.heartbeat_flushed(flushed, loop.time() - started)
            if self.history.has_unwritten_ends:
                await self.history.retry_unwritten_ends()

    # ------------------------------------------------------------------ device sync

    async def sync_devices(self) -> int:
        """The safety net behind events (see ``devicesync``); returns sessions closed."""
        return await close_sessions_of_removed_devices(self)

    async def _device_sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.device_sync_interval)
            try:
                await self.sync_devices()
            except Exception:
                logger.exception("checking live sessions against revoked devices failed")

    # ------------------------------------------------------------------ sockets

    async def send(self, live: LiveSession, frame: str, *, end_if_gone: bool = True) -> bool:
        """Write one frame; a socket that is stuck ends its session, and so does one that is
        gone unless the caller reads the socket itself (``end_if_gone=False``): it will see
        the agent's own close, and the history should record that, not a failed send."""
        if live.ended:
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await live.transport.send(frame)
        except Exception as exc:
            if not end_if_gone and not isinstance(exc, TimeoutError):
                logger.debug("send to %s failed (%r); reading its close", live.connection_id, exc)
                return False
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


__all__ = ["DeviceIdentity", "LiveSession", "PresenceHub"]

_CLOSE_CODES = {int(code) for code in CloseCode}
