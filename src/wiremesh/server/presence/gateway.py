"""One agent's WebSocket session: authenticate, welcome, heartbeat, until it ends.

The rules live in :class:`wiremesh.protocol.ServerSession`; this is the thin asyncio layer
around it. Each connection is one task that waits for the next frame *or* its next timer
(ping due, deadline), so deadlines are exact and no other task is needed per agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from starlette.websockets import WebSocket

from wiremesh.protocol import (
    AuthMessage,
    CloseCode,
    EndpointMessage,
    PathsMessage,
    PongMessage,
    ProtocolError,
    ServerSession,
    close_reason,
    encode,
)
from wiremesh.server import forwarded
from wiremesh.server.config import Settings
from wiremesh.server.devices import service as devices_service
from wiremesh.server.errors import ApiError
from wiremesh.server.presence.directory import identity_of
from wiremesh.server.presence.hub import PresenceHub
from wiremesh.server.presence.models import ConnectionState
from wiremesh.server.presence.sessions import LiveSession
from wiremesh.server.ratelimit import too_many_failures
from wiremesh.server.state import AppState

logger = logging.getLogger("wiremesh.presence")

CLOSE_WAIT = 10.0
"""How long a socket's task waits for another task that ended its session to close it."""
PING_JITTER = 0.1
"""Pings go out every interval +-10%, so agents that connected together do not stay in step."""


class StarletteTransport:
    """AgentTransport over a Starlette WebSocket."""

    __slots__ = ("websocket",)

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def send(self, text: str) -> None:
        await self.websocket.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code, reason)


class _Closed(Exception):
    """The agent closed the socket (or it broke); ``code`` is what it sent, if anything."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


async def _next_frame(websocket: WebSocket) -> str | bytes:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise _Closed(message.get("code"))
    text: str | None = message.get("text")
    if text is not None:
        return text
    data: bytes | None = message.get("bytes")
    return data if data is not None else b""


def client_address(websocket: WebSocket, settings: Settings) -> str | None:
    """The agent's public IP: the peer address, or the forwarded one from trusted proxies."""
    return forwarded.client_address(
        websocket.client.host if websocket.client else None,
        websocket.headers.getlist(settings.forwarded_header),
        settings.trusted_proxy_networks,
        settings.forwarded_header,
    )


def _next_ping_delay(interval: float) -> float:
    return interval * random.uniform(1 - PING_JITTER, 1 + PING_JITTER)


def _refusal_name(code: int) -> str:
    try:
        return CloseCode(code).name.lower()
    except ValueError:
        return str(code)


def _end_reason(code: int | None) -> str:
    if code in (None, CloseCode.NORMAL, CloseCode.GOING_AWAY, 1005):
        return "client_closed"
    try:
        return CloseCode(code).name.lower()
    except ValueError:
        return f"client_closed_{code}"


async def _refuse(websocket: WebSocket, code: int, state: AppState) -> None:
    """Close a socket that got no session, counted by why."""
    state.hub.metrics.session_refused(_refusal_name(code))
    try:
        await websocket.close(code, close_reason(code))
    except Exception as exc:  # already gone: nothing to tell
        logger.debug("closing a refused socket: %r", exc)


async def serve_agent(websocket: WebSocket, state: AppState) -> None:
    """Run one agent session from accept to close; never raises."""
    settings = state.settings
    loop = asyncio.get_running_loop()
    await websocket.accept()
    protocol = ServerSession(
        loop.time(),
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_timeout=settings.heartbeat_timeout,
        auth_timeout=settings.auth_timeout,
        rate_burst=settings.agent_rate_burst,
        rate_per_second=settings.agent_rate_per_second,
    )
    try:
        async with asyncio.timeout_at(protocol.deadline):
            auth = protocol.receive(await _next_frame(websocket), loop.time())
    except TimeoutError:
        await _refuse(websocket, CloseCode.AUTH_TIMEOUT, state)
        return
    except ProtocolError as exc:
        await _refuse(websocket, exc.code, state)
        return
    except _Closed:
        return
    assert isinstance(auth, AuthMessage)
    live = await _authenticate(websocket, state, protocol, auth)
    if live is None:
        return
    try:
        await _session_loop(websocket, state.hub, live, settings)
    finally:
        if not live.ended:
            # Cancelled (shutdown) or an unexpected error: the row must still end.
            await asyncio.shield(
                state.hub.end_session(
                    live,
                    ConnectionState.DISCONNECTED,
                    "server_error",
                    CloseCode.INTERNAL_ERROR,
                    close_transport=True,
                )
            )


async def _authenticate(
    websocket: WebSocket, state: AppState, protocol: ServerSession, auth: AuthMessage
) -> LiveSession | None:
    # A reconnect storm brings thousands of these at once; admitting a bounded number keeps
    # the rest waiting in memory (until their auth deadline, then 4009: retry later) instead
    # of timing out on the database pool and failing half-way.
    state.hub.admission_waiting += 1
    try:
        async with asyncio.timeout_at(protocol.deadline):
            await state.hub.admission.acquire()
    except TimeoutError:
        protocol.close(CloseCode.AUTH_TIMEOUT)
        await _refuse(websocket, CloseCode.AUTH_TIMEOUT, state)
        return None
    finally:
        state.hub.admission_waiting -= 1
    try:
        return await _admit(websocket, state, protocol, auth)
    finally:
        state.hub.admission.release()


async def _admit(
    websocket: WebSocket, state: AppState, protocol: ServerSession, auth: AuthMessage
) -> LiveSession | None:
    loop = asyncio.get_running_loop()
    async with state.sessionmaker() as session:
        try:
            device = await devices_service.authenticate_agent(session, auth.credential)
        except ApiError as exc:
            code = (
                CloseCode.DEVICE_REVOKED if exc.code == "device_revoked" else CloseCode.AUTH_FAILED
            )
            if code == CloseCode.AUTH_FAILED and state.auth_throttle is not None:
                wait = state.auth_throttle.failed(websocket.scope, exc.code)
                if wait is not None:  # too many failures: retry later, like a busy server
                    state.hub.metrics.session_refused(_refusal_name(CloseCode.RATE_LIMITED))
                    protocol.close(CloseCode.RATE_LIMITED)
                    with contextlib.suppress(Exception):
                        await websocket.close(CloseCode.RATE_LIMITED, too_many_failures(wait))
                    return None
            protocol.close(code)
            await _refuse(websocket, code, state)
            return None
        identity = identity_of(device, device.network_cidr)
    try:
        protocol.authenticated(loop.time())
    except ProtocolError as exc:  # the auth deadline passed while the database answered
        await _refuse(websocket, exc.code, state)
        return None
    live = LiveSession(
        device=identity,
        protocol=protocol,
        transport=StarletteTransport(websocket),
        public_ip=client_address(websocket, state.settings),
        public_port=auth.listen_port,
        agent_version=auth.agent_version,
        protocol_version=auth.version,
        lan=tuple(auth.candidates),
    )
    welcome = await state.hub.open_session(live)
    if not await state.hub.send(live, welcome):
        return None
    await state.hub.activate(live)
    return live


async def _session_loop(
    websocket: WebSocket, hub: PresenceHub, live: LiveSession, settings: Settings
) -> None:
    loop = asyncio.get_running_loop()
    protocol = live.protocol
    next_ping_at = loop.time() + _next_ping_delay(settings.heartbeat_interval)
    while not live.ended:
        try:
            async with asyncio.timeout_at(min(next_ping_at, protocol.deadline)):
                frame = await _next_frame(websocket)
        except TimeoutError:
            if live.ended:
                break  # ended by another task meanwhile: nothing left to ping
            now = loop.time()
            if protocol.is_expired(now):
                await hub.end_session(
                    live,
                    ConnectionState.TIMEOUT,
                    "heartbeat_timeout",
                    CloseCode.HEARTBEAT_TIMEOUT,
                    close_transport=True,
                )
                return
            if now >= next_ping_at:
                ping = protocol.next_ping(now)
                hub.record_ping(live)
                next_ping_at = now + _next_ping_delay(settings.heartbeat_interval)
                # A socket the agent just closed fails this send; the next read gets its
                # close frame, so the history records the agent's code, not ours.
                await hub.send(live, encode(ping), end_if_gone=False)
            continue
        except _Closed as closed:
            await hub.end_session(
                live,
                ConnectionState.DISCONNECTED,
                _end_reason(closed.code),
                closed.code,
                close_transport=False,
            )
            return
        pongs_before = protocol.last_pong_at
        try:
            message = protocol.receive(frame, loop.time())
        except ProtocolError as exc:
            timed_out = exc.code == CloseCode.HEARTBEAT_TIMEOUT
            await hub.end_session(
                live,
                ConnectionState.TIMEOUT if timed_out else ConnectionState.DISCONNECTED,
                "heartbeat_timeout" if timed_out else f"protocol_{exc.code.name.lower()}",
                exc.code,
                close_transport=True,
            )
            return
        if isinstance(message, PongMessage):
            if protocol.last_pong_at != pongs_before:
                hub.record_pong(live)
        elif isinstance(message, EndpointMessage):
            await hub.update_endpoint(live, message.listen_port)
        elif isinstance(message, PathsMessage):
            await hub.report_paths(live, message)
    # Ended by another task (superseded, revoked, a failed send) that may still be writing
    # the row; it closes the socket too. Returning before its close frame is out would let
    # the server drop the socket bare, and the agent would not learn why.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_WAIT):
            await live.closed.wait()
