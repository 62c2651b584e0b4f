"""The load generator's lean WebSocket client against the websockets library's server, and
against raw sockets for what a well-behaved server never sends."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from benchmarks.wsclient import (
    OP_TEXT,
    HandshakeError,
    LeanConnection,
    encode_client_frame,
    open_connection,
)
from websockets.asyncio.server import ServerConnection, serve

Handler = Callable[[ServerConnection], Awaitable[None]]


class Inbox:
    """Messages a client received, awaitable one by one."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def __call__(self, _connection: LeanConnection, payload: bytes) -> None:
        self.queue.put_nowait(payload)

    async def next(self) -> bytes:
        async with asyncio.timeout(10):
            return await self.queue.get()


async def _serve(handler: Handler) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/api/v1/agent/ws?x=1"


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    async def echo(ws: ServerConnection) -> None:
        assert ws.request is not None
        await ws.send(f"path {ws.request.path}")
        async for message in ws:
            if message == "fragments":
                await ws.send(["one ", "two ", "three"])
            elif message == "ping me":
                await ws.ping(b"are you there")
                await ws.send("pinged")
            elif message == "close 4001":
                await ws.close(4001, "go away")
            else:
                await ws.send(message)

    async for url in _serve(echo):
        yield url


async def test_text_both_ways_and_the_request_path(echo_url: str) -> None:
    inbox = Inbox()
    connection = await open_connection(echo_url, inbox, max_size=1 << 20)
    assert await inbox.next() == b"path /api/v1/agent/ws?x=1"
    connection.send_text("héllo")
    assert (await inbox.next()).decode() == "héllo"
    big = "x" * 70_000  # a 64-bit length on the way back, a 16-bit one never fits it
    connection.send_text(big)
    assert (await inbox.next()).decode() == big
    await connection.close()
    assert connection.close_code == 1000


async def test_fragmented_message_arrives_whole(echo_url: str) -> None:
    inbox = Inbox()
    connection = await open_connection(echo_url, inbox, max_size=1 << 20)
    await inbox.next()
    connection.send_text("fragments")
    assert await inbox.next() == b"one two three"
    await connection.close()


async def test_pings_are_answered(echo_url: str) -> None:
    inbox = Inbox()
    connection = await open_connection(echo_url, inbox, max_size=1 << 20)
    await inbox.next()
    connection.send_text("ping me")
    assert await inbox.next() == b"pinged"
    connection.send_text("still there")  # the server read our pong and goes on
    assert await inbox.next() == b"still there"
    await connection.close()


async def test_the_servers_close_code_is_kept(echo_url: str) -> None:
    inbox = Inbox()
    connection = await open_connection(echo_url, inbox, max_size=1 << 20)
    await inbox.next()
    connection.send_text("close 4001")
    async with asyncio.timeout(10):
        await connection.closed
    assert (connection.close_code, connection.close_reason) == (4001, "go away")


async def test_a_message_over_the_limit_closes_with_1009(echo_url: str) -> None:
    inbox = Inbox()
    connection = await open_connection(echo_url, inbox, max_size=100)
    await inbox.next()
    connection.send_text("y" * 200)
    async with asyncio.timeout(10):
        await connection.closed
    assert inbox.queue.empty()
    # The server echoes the client's close frame: 1009 came from this side.
    assert connection.close_code == 1009


async def _raw_server(answer: bytes) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        writer.write(answer.replace(b"KEY", key))
        await writer.drain()
        try:
            await reader.read()  # until the client drops the connection
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_a_refused_upgrade_is_a_handshake_error() -> None:
    answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
    server, url = await _raw_server(answer)
    async with server:
        with pytest.raises(HandshakeError, match="503"):
            await open_connection(url, Inbox(), max_size=100)


async def test_a_wrong_accept_value_is_a_handshake_error() -> None:
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: KEY\r\n\r\n"  # the key itself, not its accept value
    )
    server, url = await _raw_server(answer)
    async with server:
        with pytest.raises(HandshakeError, match="Accept"):
            await open_connection(url, Inbox(), max_size=100)


def test_client_frames_are_masked_and_unmask_to_the_payload() -> None:
    frame = encode_client_frame(OP_TEXT, b"abc")
    first, second = struct.unpack("!BB", frame[:2])
    assert first == 0x81  # final text frame
    assert second == 0x80 | 3  # masked, three bytes
    mask, body = frame[2:6], frame[6:]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == b"abc"
