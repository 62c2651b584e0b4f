"""The agent's long-running loop: one WebSocket session after another, until told to stop.

Protocol rules live in :class:`wiremesh.protocol.AgentSession`; this is the asyncio layer
around it. Each session waits for the next frame, its own deadline (a silent server is
dropped after ``heartbeat.timeout``) or a stop request, whichever comes first.

When a connection attempt fails or a session ends for a reason that is not final, the
agent tries its next server URL at once, and waits a jittered, exponentially growing
delay only after every URL has failed in a row (:class:`ServerRotation`). A final refusal
(revoked, unknown credential, unsupported version) ends the run on whichever server said
it: every replica shares one database and would say the same. WireGuard peers stay
configured while the servers are away, so the mesh keeps working without its coordinator.

The last known peers and relays are kept in the state dir (:mod:`.peercache`). While no
session is live they stay configured and their paths keep moving (knocks, relay fallback)
on the path tick (:mod:`.offline`); at start, when the first connection attempt fails, they
come from that cache, so a device restarted while the server is down still meshes. A
welcome replaces them.

When the machine's own address changes (:mod:`.underlay`, checked on the path tick), the
session is dropped and a new one opened at once, so the server re-announces this device at
its new address; first, one packet goes through the tunnel to every known peer, which
moves their WireGuard endpoint for this device to the new address (WireGuard roams to the
source of the last authenticated packet). After a key rotation (:meth:`AgentRunner.rotated`)
the same packets make this side start the handshakes with the new key, rather than wait for
each peer's retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from wiremesh import __version__
from wiremesh.agent.backend import DEFAULT_KEEPALIVE, WireGuardBackend
from wiremesh.agent.backoff import Backoff
from wiremesh.agent.closing import ABNORMAL_CLOSURE, Ended, Refused, close_code_of, code_name
from wiremesh.agent.lan import lan_candidates
from wiremesh.agent.nudge import endpoints_again, send_to_each
from wiremesh.agent.offline import OfflinePeers
from wiremesh.agent.pathreport import PathReporter
from wiremesh.agent.paths import PathSelector
from wiremesh.agent.peercache import KnownPeers
from wiremesh.agent.servers import USER_AGENT, ServerRotation, websocket_url
from wiremesh.agent.state import (
    STATE_FILE,
    Enrollment,
    StateError,
    file_signature,
    load_enrollment,
)
from wiremesh.agent.status import STATUS_INTERVAL, AgentStatus, Connection
from wiremesh.agent.sync import BackendError, WireGuardSync, backend_call, device_config
from wiremesh.agent.underlay import UnderlayWatch, route_source
from wiremesh.agent.waiting import Wake, cancel, wait_or_stop
from wiremesh.protocol import (
    DEFAULT_WELCOME_TIMEOUT,
    MAX_SERVER_MESSAGE_BYTES,
    AgentSession,
    AuthMessage,
    CloseCode,
    EndpointMessage,
    Peer,
    PeersChanged,
    PongMessage,
    ProtocolError,
    Relay,
    RelaysChanged,
    WelcomeReceived,
    close_reason,
    encode,
    should_reconnect,
)

__all__ = [
    "ABNORMAL_CLOSURE",
    "AgentRunner",
    "BackendError",
    "Backoff",
    "Refused",
    "device_config",
]

logger = logging.getLogger("wiremesh.agent")

PATH_TICK: Final = 0.5
"""How often WireGuard's handshakes are read to move peers between paths."""
DEFAULT_OPEN_TIMEOUT: Final = 10.0
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
DEAD_LINK_CLOSE_TIMEOUT: Final = 0.5
"""After a timeout the link is presumed dead: the close frame is sent, but its answer is
awaited this long only before the connection is aborted, so the next attempt comes at once."""
SUSPENDED_AFTER: Final = 2.0
"""A wait that ends this much later than it was due means the agent itself did not run
(SIGSTOP, a frozen VM): its clock jumped, and the server's silence is the agent's own."""


class AgentRunner:
    """Keeps this device connected and its WireGuard peers in line with the server.

    ``await run()`` returns ``None`` after :meth:`stop` (socket closed with 1000, backend
    torn down) or a :class:`Refused` when the server closed for good. Backend failures
    raise :class:`BackendError`.

    With ``state_dir``, the state file is checked before every connection attempt (one
    ``stat``; read again only when it was replaced), so ``wiremesh agent servers set``
    reaches a running agent at its next reconnect. Checking then, rather than watching the
    file as the private key is watched, needs no task and no polling: the list matters only
    when choosing where to connect, and a change never cuts a working session. Without
    ``state_dir`` the enrollment's list is kept.
    """

    def __init__(
        self,
        enrollment: Enrollment,
        private_key: str,
        backend: WireGuardBackend,
        *,
        listen_port: int,
        backoff: Backoff | None = None,
        welcome_timeout: float = DEFAULT_WELCOME_TIMEOUT,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        rng: random.Random | None = None,
        state_dir: Path | None = None,
        keepalive: int = DEFAULT_KEEPALIVE,
    ) -> None:
        self.enrollment = enrollment
        self.backend = backend
        self.backoff = backoff or Backoff()
        self.welcome_timeout = welcome_timeout
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.servers = ServerRotation(enrollment.server_urls)
        self.state_dir = state_dir
        self.sessions = 0
        """Sessions that got a welcome (for tests and logs)."""
        self._rng = rng or random.Random()
        self._private_key = private_key
        self._device = device_config(enrollment, private_key, listen_port)
        self._stop = asyncio.Event()
        self._stop_waiter: asyncio.Task[bool] | None = None
        self._known_peers: frozenset[str] = frozenset()
        self.paths = PathSelector(own_public_key=enrollment.device.public_key, keepalive=keepalive)
        """Per-peer path state; kept across sessions, like the WireGuard peers."""
        self.reporter = PathReporter()
        """What the server was told of the paths (version 3); restarted at each welcome."""
        self._state_seen: tuple[int, int, int] | None = None
        self.status = AgentStatus()
        """What ``agent status`` shows; published in the state dir."""
        self.sync = WireGuardSync(backend, self.paths, self.status)
        self._status_written = 0.0
        self.last_known = OfflinePeers(
            self._reconcile_with,
            self.paths,
            interval=PATH_TICK,
            state_dir=state_dir,
            owner=enrollment.device.peer_id,
        )
        """The peers the server last told of, configured while no session is live."""
        self.route_lookup: Callable[[str], str | None] = route_source
        """The local address that reaches the server now (see :mod:`.underlay`)."""

    # ------------------------------------------------------------------ control

    def rotated(self, enrollment: Enrollment) -> None:
        """The interface has the new private key: this device is known by the new public key,
        and every peer gets a handshake from this side now. A peer already told the new key
        completes it at once; without it, a peer whose own handshake reached the old key just
        before waits WireGuard's 5 s retry. A peer told later starts one itself, which the
        new key answers."""
        self.enrollment = enrollment
        sent = self.nudge_peers()
        logger.info("re-keyed: a handshake to each of %d peers", sent)

    def nudge_peers(self) -> int:
        """One empty packet through the tunnel to every known peer (see :mod:`.nudge`): a
        handshake with each, from this side and this address; how many were sent."""
        if self.known is None:
            return 0
        peers = self.known.peers.values()
        addresses = (peer.virtual_ip for peer in peers if peer.public_key)
        return send_to_each(addresses, self.enrollment.device.virtual_ip)

    @property
    def known(self) -> KnownPeers | None:
        """The peers and relays the server last told of (or the cache, before it did)."""
        return self.last_known.known

    @property
    def offline(self) -> bool:
        """No live session: the last known peers are configured instead."""
        return self.last_known.offline

    def stop(self) -> None:
        """Ask the loop to close the session cleanly and return (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> Refused | None:
        self._stop_waiter = asyncio.ensure_future(self._stop.wait())
        self._publish("connecting")
        refused: Refused | None = None
        try:
            await backend_call("set up the interface", self.backend.setup(self._device))
            self.last_known.load()
            refused = await self._loop()
            return refused
        finally:
            self._stop_waiter.cancel()
            self.status.peers = []
            if refused is not None:
                self._publish("refused", refused.message)
            else:
                self._publish("stopped")
            try:
                await self.backend.teardown()
            except Exception as exc:
                logger.error("could not tear down the WireGuard backend: %s", exc)

    async def _loop(self) -> Refused | None:
        attempt = 0
        while not self.stopping:
            self._follow_server_list()
            ended = await self._session()
            if ended is None:  # stopped
                break
            if not should_reconnect(ended.code):
                return Refused(ended.code, ended.reason)
            await self.last_known.go_offline(
                asyncio.get_running_loop().time(), never_connected=self.sessions == 0
            )
            if ended.roamed:
                attempt = 0
                continue
            if ended.established_for is not None and (
                ended.established_for > self.backoff.reset_after
            ):
                attempt = 0
            if not self.servers.failed():
                logger.info("trying the next server, %s", self.servers.current)
                continue
            delay = self.backoff.delay(attempt, self._rng)
            attempt += 1
            logger.info("reconnecting in %.1f s to %s", delay, self.servers.current)
            if await self._wait_ticking(None, delay) is Wake.STOPPED:
                break
        logger.info("stopped")
        return None

    def _follow_server_list(self) -> None:
        """Take the server list from the state file, if it was replaced (see the class doc)."""
        if self.state_dir is None:
            return
        signature = file_signature(self.state_dir / STATE_FILE)
        if signature == self._state_seen:
            return
        self._state_seen = signature  # a file that cannot be used is reported once
        try:
            urls = load_enrollment(self.state_dir).server_urls
        except StateError as exc:
            logger.warning("cannot read the server list again, keeping it: %s", exc)
            return
        if self.servers.replace(urls):
            logger.info(
                "the server list changed to %s; next: %s", ", ".join(urls), self.servers.current
            )

    # ------------------------------------------------------------------ one session

    async def _open(self) -> ClientConnection:
        return await connect(
            websocket_url(self.servers.current),
            compression=None,
            max_size=MAX_SERVER_MESSAGE_BYTES,
            ping_interval=None,  # the protocol's own heartbeat covers liveness
            open_timeout=self.open_timeout,
            close_timeout=self.close_timeout,
            user_agent_header=USER_AGENT,
        )

    async def _session(self) -> Ended | None:
        """One connection from open to close; ``None`` when it ended on a stop request."""
        opening = asyncio.create_task(self._open())
        try:
            woke = await self._wait_ticking(opening, None)
        except BaseException:  # the backend failed on a path tick meanwhile
            await cancel(opening)
            raise
        if woke is Wake.STOPPED:
            if await cancel(opening) and opening.exception() is None:
                await opening.result().close()  # it opened just as the stop came
            return None
        try:
            websocket = opening.result()
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            reason = str(exc) or type(exc).__name__
            logger.warning("cannot connect to %s: %s", self.servers.current, reason)
            self._publish("disconnected", f"cannot connect to {self.servers.current}: {reason}")
            return Ended(ABNORMAL_CLOSURE, reason, None)
        try:
            return await self._converse(websocket)
        except asyncio.CancelledError:  # e.g. a second SIGTERM: leave without waiting
            with contextlib.suppress(Exception):
                await websocket.close(CloseCode.GOING_AWAY, "agent stopping")
            raise
        except BaseException:  # a backend failure or a bug: the session ends with it
            with contextlib.suppress(Exception):
                await websocket.close(CloseCode.INTERNAL_ERROR, close_reason(1011))
            raise

    async def _converse(self, websocket: ClientConnection) -> Ended | None:
        loop = asyncio.get_running_loop()
        session = AgentSession(loop.time(), welcome_timeout=self.welcome_timeout)
        announced_port = self.backend.listen_port
        welcomed_at: float | None = None

        def ended(code: int, reason: str, *, roamed: bool = False) -> Ended:
            lasted = None if welcomed_at is None else loop.time() - welcomed_at
            self._publish("disconnected", f"{code} {code_name(code)} ({reason})")
            return Ended(code, reason, lasted, roamed)

        self.status.server = self.servers.current
        remote = websocket.remote_address
        underlay = UnderlayWatch(str(remote[0]) if remote else None, self.route_lookup)

        try:
            await websocket.send(
                encode(
                    AuthMessage(
                        credential=self.enrollment.credential,
                        listen_port=announced_port if 1 <= announced_port <= 65535 else None,
                        agent_version=__version__,
                        candidates=lan_candidates(announced_port, self.enrollment.network.network),
                    )
                )
            )
            # Paths move on their own clock: pings may arrive more often than a tick, and a
            # tick that waited for a quiet socket would then never come.
            next_path_tick = loop.time() + PATH_TICK
            while True:
                if welcomed_at is not None and loop.time() >= next_path_tick:
                    next_path_tick = loop.time() + PATH_TICK
                    moved = underlay.moved()
                    if moved is not None:
                        return await self._roam(websocket, moved, ended)
                    await self._reconcile(session)  # paths move with handshakes
                    await self._report_paths(websocket)
                receiving = asyncio.create_task(websocket.recv())
                timeout = max(
                    0.0, min(session.deadline - loop.time(), next_path_tick - loop.time())
                )
                due = loop.time() + timeout
                woke = await self._wait(receiving, timeout)
                suspended = _suspended_for(loop.time() - due)
                if woke is not Wake.DONE:
                    await cancel(receiving)  # safe: websockets loses no data on cancel
                    if self.stopping:
                        await websocket.close(CloseCode.NORMAL, close_reason(CloseCode.NORMAL))
                        logger.info("disconnected: closed by this agent (1000 NORMAL)")
                        return None
                    try:
                        session.check_deadline(loop.time())
                    except ProtocolError as exc:
                        return await self._fail(websocket, exc, ended, suspended)
                if suspended is not None:
                    logger.warning(
                        "the agent was suspended for %.0f s: the server may have dropped "
                        "the session meanwhile",
                        suspended,
                    )
                if woke is not Wake.DONE:
                    continue
                frame = receiving.result()
                self.status.last_contact = time.time()
                try:
                    events = session.receive(frame, loop.time())
                except ProtocolError as exc:
                    return await self._fail(websocket, exc, ended)
                for event in events:
                    if isinstance(event, PongMessage):
                        await websocket.send(encode(event))
                    elif isinstance(event, WelcomeReceived):
                        welcomed_at = loop.time()
                        self.last_known.online()
                        self.sessions += 1
                        self.servers.connected()
                        self.status.reason = None
                        self.reporter.start(event.welcome.version, loop.time())
                        announced_port = await self._on_welcome(
                            websocket, session, event, announced_port
                        )
                        self._publish("connected")
                        await self._report_paths(websocket)
                    elif isinstance(event, PeersChanged):
                        await self._on_peers_changed(session, event)
                    elif isinstance(event, RelaysChanged):
                        logger.info(
                            "relays up: %s", ", ".join(r.name for r in event.relays) or "none"
                        )
                        await self._reconcile(session)
                        self._remember(session)
        except ConnectionClosed as exc:
            code, reason = close_code_of(exc)
            logger.warning("disconnected: %d %s (%s)", code, code_name(code), reason)
            return ended(code, reason)

    async def _fail(
        self,
        websocket: ClientConnection,
        exc: ProtocolError,
        ended: Callable[[int, str], Ended],
        suspended: float | None = None,
    ) -> Ended:
        timed_out = exc.code in (CloseCode.HEARTBEAT_TIMEOUT, CloseCode.AUTH_TIMEOUT)
        if timed_out and suspended is not None:
            logger.warning("the agent was suspended for %.0f s: dropping the connection", suspended)
        elif exc.code == CloseCode.HEARTBEAT_TIMEOUT:
            logger.warning("the server went silent: dropping the connection")
        elif exc.code == CloseCode.AUTH_TIMEOUT:
            logger.warning("no welcome from the server in time: dropping the connection")
        else:
            logger.warning("the server broke the protocol: %s", exc)
        if timed_out:  # a dead link answers no close frame: do not wait the full timeout
            websocket.close_timeout = min(self.close_timeout, DEAD_LINK_CLOSE_TIMEOUT)
        await websocket.close(exc.code, exc.reason)
        logger.warning("disconnected: %d %s (%s)", exc.code, exc.code.name, exc.reason)
        return ended(int(exc.code), exc.reason)

    async def _roam(
        self,
        websocket: ClientConnection,
        moved: tuple[str, str],
        ended: Callable[..., Ended],
    ) -> Ended:
        """The machine reaches its server from another address now: tell the peers by
        packets from it (they roam at once) and drop the session, whose TCP connection is
        bound to the old address (no close handshake: it may never be answered). The
        endpoints are set again first (:func:`.nudge.endpoints_again`)."""
        old, new = moved
        websocket.transport.abort()
        resets = endpoints_again(await backend_call("read the peers", self.backend.peers()))
        if resets:
            await backend_call("set the peers' endpoints again", self.backend.apply(resets))
        sent = self.nudge_peers()
        logger.warning(
            "this machine's address changed from %s to %s: reconnecting (%d peers told)",
            old,
            new,
            sent,
        )
        return ended(CloseCode.GOING_AWAY, f"the address changed from {old} to {new}", roamed=True)

    async def _on_welcome(
        self,
        websocket: ClientConnection,
        session: AgentSession,
        event: WelcomeReceived,
        announced_port: int,
    ) -> int:
        welcome = event.welcome
        wanted = device_config(welcome.device, self._private_key, self._device.listen_port)
        if wanted.address != self._device.address:
            logger.warning(
                "the server assigns %s, the interface has %s: reconfiguring",
                wanted.address,
                self._device.address,
            )
            self._device = wanted
            await backend_call("reconfigure the interface", self.backend.setup(wanted))
        peers = session.peers
        self._known_peers = frozenset(peers)
        self.paths.own_public_ip = welcome.public_ip
        logger.info(
            "connected: virtual IP %s in %s, connection %s, %d peers (%d online), server %s",
            welcome.device.virtual_ip,
            welcome.device.network,
            welcome.connection_id,
            len(peers),
            sum(1 for peer in peers.values() if peer.online),
            self.servers.current,
        )
        await self._reconcile(session)
        self._remember(session)
        port = self.backend.listen_port
        if port != announced_port and 1 <= port <= 65535:
            await websocket.send(encode(EndpointMessage(listen_port=port)))
            logger.info("listen port is now %d", port)
            return port
        return announced_port

    async def _on_peers_changed(self, session: AgentSession, event: PeersChanged) -> None:
        peers = session.peers
        added = sum(1 for peer in event.upserted if peer.peer_id not in self._known_peers)
        self._known_peers = frozenset(peers)
        logger.info(
            "peers changed: %d added, %d updated, %d removed; %d peers (%d online)",
            added,
            len(event.upserted) - added,
            len(event.removed),
            len(peers),
            sum(1 for peer in peers.values() if peer.online),
        )
        await self._reconcile(session)
        self._remember(session)

    async def _reconcile(self, session: AgentSession) -> None:
        await self._reconcile_with(session.peers, session.relays)

    async def _reconcile_with(self, peers: Mapping[str, Peer], relays: Sequence[Relay]) -> None:
        public_key = self.enrollment.device.public_key  # follows a key rotation
        changes = await self.sync.step(peers, relays, public_key)
        if changes or time.monotonic() - self._status_written >= STATUS_INTERVAL:
            self._publish(self.status.connection)

    def _remember(self, session: AgentSession) -> None:
        self.last_known.remember(session.peers, session.relays)

    async def _wait_ticking(self, task: asyncio.Task[Any] | None, seconds: float | None) -> Wake:
        """:meth:`_wait`; while offline, the last known peers' paths move every ``PATH_TICK``
        meanwhile (on a clock of their own: retries may come faster than a tick)."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while True:
            await self.last_known.tick(loop.time())
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            until_tick = self.last_known.until_tick(loop.time())
            if until_tick is not None:
                timeout = until_tick if timeout is None else min(until_tick, timeout)
            woke = await self._wait(task, timeout)
            if woke is not Wake.TIMEOUT or (deadline is not None and loop.time() >= deadline):
                return woke

    async def _report_paths(self, websocket: ClientConnection) -> None:
        """Tell a version 3 server the paths of the last reconcile, if they are news."""
        loop = asyncio.get_running_loop()
        for frame in self.reporter.frames(self.sync.peer_paths, loop.time()):
            await websocket.send(frame)

    def _publish(self, connection: Connection, reason: str | None = None) -> None:
        """Record the state and write the status file (when there is a state dir)."""
        self.status.set_connection(connection, reason)
        if self.state_dir is not None:
            self.status.write(self.state_dir)
            self._status_written = time.monotonic()

    async def _wait(self, task: asyncio.Task[Any] | None, seconds: float | None) -> Wake:
        """Wait for ``task``, a stop request or ``seconds`` (see :func:`wait_or_stop`)."""
        assert self._stop_waiter is not None
        return await wait_or_stop(task, self._stop_waiter, seconds)


def _suspended_for(late: float) -> float | None:
    """How long the agent did not run, judged by how late a wait ended; ``None``: it ran."""
    return late if late > SUSPENDED_AFTER else None
