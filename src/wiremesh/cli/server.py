"""`wiremesh server`: run the coordination server (uvicorn, programmatically)."""

from __future__ import annotations

import gc
import importlib.util
import socket
from pathlib import Path

import typer
import uvicorn
from uvicorn.config import WS_PROTOCOLS

from wiremesh.cli._common import cli_settings, fail, run, unit_of_work
from wiremesh.cli.db import database_step
from wiremesh.server.app import create_app
from wiremesh.server.auth.links import printed_password_link
from wiremesh.server.config import Settings
from wiremesh.server.db import migrate
from wiremesh.server.orgs.invitations import public_base_url
from wiremesh.server.state import AppState
from wiremesh.server.users import service as users_service

app = typer.Typer(no_args_is_help=True)

GC_YOUNG_THRESHOLD = 50_000


def server_url(host: str, port: int, *, tls: bool = False) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def event_loop() -> str:
    """uvloop when it is installed, else the standard asyncio loop."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def websocket_implementation() -> str:
    """The websockets library: its sans-I/O protocol where uvicorn has it (the older one is
    deprecated and warns at every start), else the classic one."""
    return "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"


def uvicorn_config(settings: Settings, host: str, port: int) -> uvicorn.Config:
    """Proxy headers stay off: the app itself decides which proxies it trusts."""
    return uvicorn.Config(
        create_app(settings, migrate_on_start=False),
        host=host,
        port=port,
        # h11 bounds the request line and headers (httptools reads any size into memory).
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        ws=websocket_implementation(),
        # Agents speak small JSON frames: compression costs CPU and ~64 KiB per socket.
        ws_per_message_deflate=False,
        # The application pings (docs/protocol.md); protocol-level pings would double it.
        ws_ping_interval=None,
        ws_ping_timeout=None,
        # Agent frames are at most 4 KiB; the app closes larger ones with 1009 and a reason,
        # this cap only stops a peer from making the server buffer megabytes first.
        ws_max_size=64 * 1024,
        # A reconnect storm opens thousands of sockets at once.
        backlog=8192,
        # The hub records every session's end before uvicorn closes sockets; after that,
        # waiting for thousands of close handshakes buys nothing.
        timeout_graceful_shutdown=10,
        proxy_headers=False,
        log_level=settings.log_level,
        # Logging is set up once by the command (wiremesh.server.logs), uvicorn's loggers too.
        log_config=None,
        loop=event_loop(),
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )


async def _bootstrap_if_empty(settings: Settings) -> tuple[str, str, str] | None:
    async with unit_of_work(settings) as session:
        created = await users_service.bootstrap_if_empty(session)
        if created is None:
            return None
        user, token = created
        link = await printed_password_link(session, user, public_base_url(settings))
        return user.email, token, link


class WiremeshServer(uvicorn.Server):
    """uvicorn, but agent sessions end before uvicorn closes their sockets.

    Left to uvicorn, every socket closes on its own and each session writes its own end
    row; the hub instead records the end of all of them in one statement.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # A full garbage collection walks every object: with tens of thousands of sessions it
        # stalled the event loop for seconds (1.7 s measured at 10,000 agents), long enough
        # to delay pings. What start-up built is frozen out of collections, and the older
        # generations are collected far less often; the few cycles left are reclaimed later.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        state = getattr(getattr(app, "state", None), "wiremesh", None)
        if isinstance(state, AppState):
            await state.hub.stop()
        await super().shutdown(sockets)


def serve_forever(config: uvicorn.Config) -> None:
    """Block until the server stops (a seam for tests)."""
    WiremeshServer(config).run()


def server(
    host: str | None = typer.Option(None, "--host", help="Listen address [settings: host]"),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Listen port [settings: port]"
    ),
    tls_cert: Path | None = typer.Option(
        None,
        "--tls-cert",
        exists=True,
        dir_okay=False,
        help="PEM certificate chain: serve HTTPS and wss:// [settings: tls_cert]",
    ),
    tls_key: Path | None = typer.Option(
        None,
        "--tls-key",
        exists=True,
        dir_okay=False,
        help="PEM private key of the certificate [settings: tls_key]",
    ),
) -> None:
    """Run the coordination server. On the first start it creates an administrator."""
    settings = cli_settings()
    host = host or settings.host
    port = port or settings.port
    updates: dict[str, object] = {}
    if port != settings.port:
        # The default replica id is <host>:<port>: the port it really listens on.
        updates["port"] = port
    if tls_cert is not None or tls_key is not None:
        if tls_cert is None or tls_key is None:
            fail("--tls-cert and --tls-key go together")
        updates |= {"tls_cert": tls_cert, "tls_key": tls_key}
    if updates:
        settings = settings.model_copy(update=updates)
    database_step(lambda: migrate.upgrade(settings))
    created = run(lambda: _bootstrap_if_empty(settings))
    url = server_url(host, port, tls=settings.tls_enabled)
    typer.echo(f"wiremesh server listening on {url}")
    if settings.public_url:
        typer.echo(f"public URL: {settings.public_url}")
    if created is not None:
        email, token, link = created
        typer.echo(f"First start: created the server administrator {email}.")
        typer.echo(f"Its API token, shown only this once: {token}")
        typer.echo(f"Choose its dashboard password (once, within 24 h): {link}")
    serve_forever(uvicorn_config(settings, host, port))


def register(root: typer.Typer) -> None:
    """Add the top-level ``wiremesh server`` command."""
    root.command("server")(server)
