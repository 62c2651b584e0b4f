"""create_app(): the ASGI application and the lifespan that owns engine, hub, mail and workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from wiremesh import __version__
from wiremesh.protocol.urls import AGENT_WEBSOCKET_PATH, API_PREFIX
from wiremesh.server.alerts.transitions import alert_on_transition
from wiremesh.server.alerts.worker import OfflineAlertChecker
from wiremesh.server.config import Settings, load_settings, split_listen_address
from wiremesh.server.db import migrate
from wiremesh.server.db.session import create_engine, create_sessionmaker
from wiremesh.server.errors import ApiError
from wiremesh.server.events.broadcast import EventBroadcast
from wiremesh.server.events.feed import EventFeed
from wiremesh.server.events.pruning import EventPruner
from wiremesh.server.http_errors import document_error_responses, install_error_handlers
from wiremesh.server.limits import BodyLimitMiddleware
from wiremesh.server.metrics.exposition import CONTENT_TYPE, MetricsExporter, authorized
from wiremesh.server.metrics.listener import MetricsListener
from wiremesh.server.metrics.recorder import ServerMetrics
from wiremesh.server.presence.cleanup import CleanupWorker
from wiremesh.server.presence.gateway import serve_agent
from wiremesh.server.presence.hub import PresenceHub
from wiremesh.server.ratelimit import AuthThrottle, OrgBudget
from wiremesh.server.state import AppState
from wiremesh.server.web import mount_dashboard
from wiremesh.server.workers.mail_outbox import MailOutboxWorker
from wiremesh.server.workers.periodic import PeriodicWorker

logger = logging.getLogger("wiremesh.server")


class WiremeshApp(FastAPI):
    """FastAPI, with the agent WebSocket taken straight off the server's ASGI callables.

    Every agent frame would otherwise pass through the routing and exception middleware:
    about a dozen wrapper coroutines per send, a third of the server's CPU while holding
    thousands of agents. The agent socket needs none of it (its errors end as close codes,
    see docs/protocol.md), so it is served before the middleware stack.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == AGENT_WEBSOCKET_PATH:
            scope["app"] = self
            await serve_agent(WebSocket(scope, receive, send), self.state.wiremesh)
            return
        await super().__call__(scope, receive, send)


READY_DATABASE_TIMEOUT = 2.0


class StrictTransportSecurity:
    """Adds ``Strict-Transport-Security`` to every HTTP response while the server serves TLS."""

    def __init__(self, app: ASGIApp, max_age: int) -> None:
        self.app = app
        self.header = (b"strict-transport-security", f"max-age={max_age}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)


def _api_routers() -> list[APIRouter]:
    """Every domain's endpoints; imported here so the app is the one place that lists them."""
    from wiremesh.server.alerts.api import router as alerts_router
    from wiremesh.server.auth.api import router as auth_router
    from wiremesh.server.devices.api import router as devices_router
    from wiremesh.server.mail.api import router as mail_router
    from wiremesh.server.orgs.api import router as orgs_router
    from wiremesh.server.paths.api import router as paths_router
    from wiremesh.server.presence.api import router as presence_router
    from wiremesh.server.users.api import router as users_router

    return [
        users_router,
        auth_router,
        orgs_router,
        devices_router,
        presence_router,
        mail_router,
        alerts_router,
        paths_router,
    ]


def create_app(settings: Settings | None = None, *, migrate_on_start: bool = True) -> WiremeshApp:
    """Build the app; the lifespan migrates the database (when asked) and starts the workers."""
    settings = settings or load_settings()
    throttle = AuthThrottle(settings)
    metrics = ServerMetrics(settings.replica_id)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate_on_start:
            await asyncio.to_thread(migrate.upgrade, settings)
        engine = create_engine(settings)
        feed = EventFeed(settings.resolved_database_url, poll_interval=settings.event_poll_interval)
        sessionmaker = create_sessionmaker(engine, after_commit=feed.after_commit)
        hub = PresenceHub(
            settings, sessionmaker, on_transition=alert_on_transition, metrics=metrics
        )
        await hub.start()
        broadcast = EventBroadcast()
        await feed.start(
            sessionmaker, apply=broadcast.chain(hub.apply_events), reset=hub.reload_view
        )
        workers: list[PeriodicWorker] = [
            CleanupWorker(settings, sessionmaker),
            EventPruner(settings, sessionmaker),
            MailOutboxWorker.from_settings(sessionmaker, settings),
            OfflineAlertChecker(sessionmaker, settings, interval=settings.alert_check_interval),
        ]
        for worker in workers:
            worker.on_run = metrics.worker_ran_named
            if isinstance(worker, MailOutboxWorker):
                worker.on_report = metrics.mail_reported
            await worker.start()
        exporter = MetricsExporter(metrics, hub, engine, sessionmaker)
        listener: MetricsListener | None = None
        if settings.metrics_listen is not None:
            metrics_host, metrics_port = split_listen_address(settings.metrics_listen)
            listener = MetricsListener(exporter, metrics_host, metrics_port, settings.metrics_token)
            await listener.start()
        app.state.wiremesh = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            hub=hub,
            feed=feed,
            auth_throttle=throttle,
            metrics=exporter,
            invitation_budget=OrgBudget(
                settings.invitation_burst,
                settings.invitation_per_hour / 3600,
                code="too_many_invitations",
                too_many="sent too many invitations",
            ),
            broadcast=broadcast,
        )
        try:
            yield
        finally:
            if listener is not None:
                await listener.stop()
            exporter.close()
            for worker in reversed(workers):
                await worker.stop()
            await hub.stop()
            await feed.stop()
            await engine.dispose()

    app = WiremeshApp(
        title="wiremesh",
        version=__version__,
        description="Coordination server for a multi-tenant WireGuard mesh VPN",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Before anything reads the body: a request over the limit is refused unparsed.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.state.auth_throttle = throttle
    if settings.tls_enabled and settings.hsts_max_age > 0:
        app.add_middleware(StrictTransportSecurity, max_age=settings.hsts_max_age)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text format; only with a metrics token (and then only with it). A wrong
        token counts as a failed authentication of the client's address."""
        state: AppState | None = getattr(app.state, "wiremesh", None)
        token = settings.metrics_token
        if token is None or state is None or state.metrics is None:
            raise ApiError(404, "not_found", "metrics are not served on this port")
        authorization = request.headers.get("authorization")
        if authorization is None:
            raise ApiError(401, "metrics_token_required", "a metrics token is required")
        if not authorized(token, authorization):
            raise ApiError(401, "invalid_metrics_token", "the metrics token is not valid")
        return Response(await state.metrics.scrape(), media_type=CONTENT_TYPE)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process serves requests")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness for load balancers: the database answers and presence runs",
        responses={503: {"description": "not ready: the body says why"}},
    )
    async def readyz() -> JSONResponse:
        state: AppState | None = getattr(app.state, "wiremesh", None)
        if state is None or not state.hub.started or state.hub.stopping:
            return _not_ready("starting or stopping")
        try:
            async with asyncio.timeout(READY_DATABASE_TIMEOUT), state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            logger.warning("not ready: the database does not answer (%r)", exc)
            return _not_ready("the database does not answer")
        return JSONResponse({"status": "ready"})

    for router in _api_routers():
        document_error_responses(router)
        app.include_router(router, prefix=API_PREFIX)
    mount_dashboard(app, settings)
    return app
