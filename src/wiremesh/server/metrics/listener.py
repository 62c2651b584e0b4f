"""``/metrics`` on an address of its own (``WIREMESH_METRICS_LISTEN``), for a Prometheus
that reaches the replicas on an internal network while the API port faces agents.

A few lines of HTTP/1.1 on asyncio's streams: one GET per connection, nothing else served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import SecretStr

from wiremesh.server.metrics.exposition import CONTENT_TYPE, MetricsExporter, authorized

logger = logging.getLogger("wiremesh.metrics")

READ_TIMEOUT = 10.0
MAX_REQUEST_BYTES = 16 * 1024


class MetricsListener:
    def __init__(
        self, exporter: MetricsExporter, host: str, port: int, token: SecretStr | None
    ) -> None:
        self.exporter = exporter
        self.host = host
        self.port = port
        self.token = token
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST_BYTES
        )
        logger.info("serving /metrics on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, body = await self._answer(head.decode("latin-1"))
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that sent no complete request gets nothing
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, head: str) -> tuple[str, str, bytes]:
        request_line, *header_lines = head.split("\r\n")
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if path != "/metrics":
            return "404 Not Found", "text/plain", b"not found: only /metrics is served here\n"
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        if not authorized(self.token, headers.get("authorization")):
            return "401 Unauthorized", "text/plain", b"a metrics token is required\n"
        return "200 OK", CONTENT_TYPE, await self.exporter.scrape()
