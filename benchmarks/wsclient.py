"""A lean WebSocket client for the load generator: one ``asyncio.Protocol`` per connection,
no task, no queue.

A simulated agent receives dozens of small frames per connect: a ``peers_delta`` for every
member of its org that joins after it. Through the websockets library's asyncio client each
frame passes a parser generator, an assembler, a queue and a task wake-up, about 60 µs of
CPU; on a two-core machine that made the load generator cost as much per connect as the
server it measures. Here a frame is parsed in ``data_received`` and handed to a callback
(a few µs), and replies are written at once.

It speaks RFC 6455 as a client needs to and no more: the opening handshake (the key and
its expected accept value from websockets' helpers, the ``101`` checked), server frames
unmasked (a masked one is a protocol error), client frames masked (websockets' C
``apply_mask``), fragmented messages reassembled, pings answered, and the closing handshake
in both directions. No extensions: agents never negotiate compression.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from websockets.utils import accept_key, apply_mask, generate_key

__all__ = ["HandshakeError", "LeanConnection", "encode_client_frame", "open_connection"]

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
NO_STATUS = 1005
ABNORMAL = 1006
PROTOCOL_ERROR = 1002
TOO_BIG = 1009
MAX_RESPONSE_HEAD = 16 * 1024
CLOSE_TIMEOUT = 5.0


class HandshakeError(Exception):
    """The server did not switch protocols (its status line says why)."""


def encode_client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (a fresh random mask each call)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    return head + mask + apply_mask(payload, mask)


class LeanConnection(asyncio.Protocol):
    """One client connection; ``on_message`` gets every complete text or binary message.

    ``opened`` resolves once the server switched protocols (or fails with
    :class:`HandshakeError`); ``closed`` resolves when the TCP connection is gone, with
    ``close_code`` the code the server sent (1006 when it sent none).
    """

    def __init__(
        self,
        host: str,
        path: str,
        on_message: Callable[[LeanConnection, bytes], None],
        *,
        max_size: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.close_reason = ""
        self._host = host
        self._path = path
        self._key = generate_key()
        self._on_message = on_message
        self._max_size = max_size
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._close_sent = False
        self._failed = False
        self._abort_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(
            (
                f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        if not self.opened.done():
            self._buffer += data
            if not self._read_response():
                return
        elif self._buffer:
            self._buffer += data
        else:
            self._buffer = bytearray(data)
        self._read_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if self.close_code is None:
            self.close_code = ABNORMAL
        if not self.opened.done():
            self.opened.set_exception(
                HandshakeError(f"connection closed during the handshake: {exc!r}")
            )
        if not self.closed.done():
            self.closed.set_result(None)

    # ------------------------------------------------------------ sending

    def send_text(self, text: str) -> None:
        self.send_frame(encode_client_frame(OP_TEXT, text.encode()))

    def send_frame(self, frame: bytes) -> None:
        """Write an already encoded (masked) frame; nothing once closing has started."""
        if self._transport is not None and not self._close_sent:
            self._transport.write(frame)

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame; the server answers and drops the connection, or after
        ``CLOSE_TIMEOUT`` the socket is dropped here."""
        if self._close_sent or self._transport is None or self._transport.is_closing():
            return
        self._close_sent = True
        self._transport.write(
            encode_client_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())
        )
        loop = asyncio.get_running_loop()
        self._abort_timer = loop.call_later(CLOSE_TIMEOUT, self.abort)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake, waited for."""
        self.start_close(code, reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT + 1):
                await asyncio.shield(self.closed)
        self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------ receiving

    def _read_response(self) -> bool:
        """Check the handshake response once it is complete; False while incomplete or failed."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_RESPONSE_HEAD:
                self._fail_handshake("the response head is too long")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail_handshake(f"the server answered {head[0]!r}")
            return False
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept_key(self._key):
            self._fail_handshake("the server's Sec-WebSocket-Accept does not match the key")
            return False
        self.opened.set_result(None)
        return True

    def _fail_handshake(self, why: str) -> None:
        self.opened.set_exception(HandshakeError(why))
        self.abort()

    def _read_frames(self) -> None:
        buffer = self._buffer
        start = 0
        size = len(buffer)
        while size - start >= 2:
            first, second = buffer[start], buffer[start + 1]
            if second & 0x80:
                self._fail(PROTOCOL_ERROR, "a server frame must not be masked")
                return
            length = second & 0x7F
            at = start + 2
            if length == 126:
                if size - at < 2:
                    break
                length = int.from_bytes(buffer[at : at + 2], "big")
                at += 2
            elif length == 127:
                if size - at < 8:
                    break
                length = int.from_bytes(buffer[at : at + 8], "big")
                at += 8
            if length > self._max_size:
                self._fail(TOO_BIG, "message too big")
                return
            if size - at < length:
                break
            payload = bytes(buffer[at : at + length])
            start = at + length
            self._frame(first & 0x0F, bool(first & 0x80), payload)
            if self._failed:
                return
        if start:
            del buffer[:start]

    def _frame(self, opcode: int, final: bool, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if self._fragments:
                self._fail(PROTOCOL_ERROR, "a new message inside a fragmented one")
            elif final:
                self._on_message(self, payload)
            else:
                self._fragments.append(payload)
        elif opcode == OP_CONTINUATION:
            if not self._fragments:
                self._fail(PROTOCOL_ERROR, "a continuation without a message")
                return
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > self._max_size:
                self._fail(TOO_BIG, "message too big")
            elif final:
                message = b"".join(self._fragments)
                self._fragments.clear()
                self._on_message(self, message)
        elif opcode == OP_CLOSE:
            self.close_code = (
                struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else NO_STATUS
            )
            self.close_reason = payload[2:].decode(errors="replace")
            # Echo the code (RFC 6455 5.5.1); the server then drops the TCP connection.
            self.start_close(self.close_code if self.close_code != NO_STATUS else 1000)
        elif opcode == OP_PING:
            self.send_frame(encode_client_frame(OP_PONG, payload))
        elif opcode != OP_PONG:
            self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode}")

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: nothing more is read, the close frame says why."""
        self._failed = True
        self._buffer.clear()
        self.close_code, self.close_reason = code, reason
        self.start_close(code, reason)


async def open_connection(
    url: str,
    on_message: Callable[[LeanConnection, bytes], None],
    *,
    local_addr: tuple[str, int] | None = None,
    max_size: int,
) -> LeanConnection:
    """Connect to a ``ws://`` URL and finish the opening handshake (the caller bounds it
    with a timeout); the transport is dropped if it does not complete."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"only ws:// URLs: {url!r}")
    port = parts.port or 80
    host_header = parts.netloc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: LeanConnection(host_header, path, on_message, max_size=max_size),
        parts.hostname,
        port,
        local_addr=local_addr,
    )
    try:
        await connection.opened
    except BaseException:
        connection.abort()
        raise
    return connection
