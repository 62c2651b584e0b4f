"""A minimal agent over a real WebSocket, for tests that watch what the server sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wiremesh.protocol import PROTOCOL_VERSION

Message = dict[str, Any]


class AgentSocket(Protocol):
    """What the helpers below need of a socket: a ``ClientConnection`` or a ``LiveAgent``."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...


async def open_session(
    ws_url: str,
    credential: str,
    port: int = 51820,
    *,
    source_address: str | None = None,
    tls: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[ClientConnection, Message]:
    """Connect (from ``source_address`` when given; verifying a wss:// server with ``tls``;
    with extra handshake ``headers``), authenticate; the socket and the welcome."""
    options: dict[str, Any] = {}
    if source_address is not None:
        options["local_addr"] = (source_address, 0)
    if tls is not None:
        options["ssl"] = tls
    if headers:
        options["additional_headers"] = headers
    ws = await connect(ws_url, **options)
    await ws.send(
        json.dumps(
            {
                "type": "auth",
                "version": PROTOCOL_VERSION,
                "credential": credential,
                "listen_port": port,
                "agent_version": "test",
            }
        )
    )
    welcome: Message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def connect_agent(ws_url: str, credential: str, port: int = 51820) -> ClientConnection:
    """Connect, authenticate and read the welcome; the socket is ready for deltas."""
    ws, _welcome = await open_session(ws_url, credential, port)
    return ws


class LiveAgent:
    """A raw agent whose socket a background task reads all the time.

    Pings are answered as they come, so the agent stays online however long the test looks
    elsewhere (a socket nobody reads misses its pongs and the server times it out). Every
    other frame waits in a queue for :func:`wait_for_change`; the close ends the queue.
    """

    def __init__(self, ws: ClientConnection, welcome: Message) -> None:
        self.ws = ws
        self.welcome = welcome
        self.pings_answered = 0
        self.closed: ConnectionClosed | None = None
        self._frames: asyncio.Queue[str | bytes | ConnectionClosed] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        ws_url: str,
        credential: str,
        port: int = 51820,
        *,
        source_address: str | None = None,
        tls: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None,
    ) -> LiveAgent:
        ws, welcome = await open_session(
            ws_url, credential, port, source_address=source_address, tls=tls, headers=headers
        )
        return cls(ws, welcome)

    @property
    def connection_id(self) -> str:
        connection_id: str = self.welcome["connection_id"]
        return connection_id

    @property
    def close_code(self) -> int | None:
        """The code the server closed with; None while open (or closed without a frame)."""
        if self.closed is None or self.closed.rcvd is None:
            return None
        return self.closed.rcvd.code

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.ws.recv()
                message = json.loads(frame)
                if message.get("type") == "ping":
                    await self.ws.send(json.dumps({"type": "pong", "seq": message["seq"]}))
                    self.pings_answered += 1
                else:
                    self._frames.put_nowait(frame)
        except ConnectionClosed as closed:
            self.closed = closed
            self._frames.put_nowait(closed)

    async def recv(self) -> str | bytes:
        """The next frame that is not a ping; raises ConnectionClosed once the socket closed."""
        frame = await self._frames.get()
        if isinstance(frame, ConnectionClosed):
            self._frames.put_nowait(frame)  # every later call raises it too
            raise frame
        return frame

    async def send(self, message: str) -> None:
        await self.ws.send(message)

    async def wait_closed(self, seconds: float = 5.0) -> int | None:
        """Wait until the server closes the socket; the code it closed with."""
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), seconds)
        except TimeoutError:
            raise AssertionError(f"the server did not close the socket in {seconds} s") from None
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 5)


async def next_message(ws: AgentSocket, seconds: float = 5.0) -> Message:
    """The next message that is not a ping (pings are answered, as an agent would)."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no message in time")
        message: Message = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong", "seq": message["seq"]}))
            continue
        return message


async def wait_for_change(
    ws: AgentSocket, matches: Callable[[Message], bool], seconds: float = 5.0
) -> Message:
    """The first peers_delta change for which ``matches`` is true; earlier ones are skipped."""
    deadline = time.monotonic() + seconds
    while True:
        message = await next_message(ws, max(deadline - time.monotonic(), 0.01))
        assert message["type"] == "peers_delta", message
        changes: list[Message] = message["changes"]
        for change in changes:
            if matches(change):
                return change


def upsert_of(peer_id: str, **fields: Any) -> Callable[[Message], bool]:
    def matches(change: Message) -> bool:
        if change["op"] != "upsert" or change["peer"]["peer_id"] != peer_id:
            return False
        return all(change["peer"].get(k) == v for k, v in fields.items())

    return matches


def removal_of(peer_id: str) -> Callable[[Message], bool]:
    def matches(change: Message) -> bool:
        return bool(change["op"] == "remove" and change["peer_id"] == peer_id)

    return matches


async def close_code(ws: AgentSocket, seconds: float = 5.0) -> int | None:
    """Answer pings until the server closes the socket; the code it closed with."""
    try:
        while True:
            await next_message(ws, seconds)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
