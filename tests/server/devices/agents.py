"""A minimal agent over a real WebSocket, for tests that watch what the server sends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wiremesh.protocol import PROTOCOL_VERSION

Message = dict[str, Any]


async def connect_agent(ws_url: str, credential: str, port: int = 51820) -> ClientConnection:
    """Connect, authenticate and read the welcome; the socket is ready for deltas."""
    ws = await connect(ws_url)
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
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome", welcome
    return ws


async def next_message(ws: ClientConnection, seconds: float = 5.0) -> Message:
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
    ws: ClientConnection, matches: Callable[[Message], bool], seconds: float = 5.0
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


async def close_code(ws: ClientConnection, seconds: float = 5.0) -> int | None:
    """Answer pings until the server closes the socket; the code it closed with."""
    try:
        while True:
            await next_message(ws, seconds)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
