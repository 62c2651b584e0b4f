"""Engine and session factories for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from wiremesh.server.config import Settings
from wiremesh.server.files import private_directory, private_file

SQLITE_BUSY_TIMEOUT_MS = 30_000
POOL_RECYCLE_SECONDS = 1800
"""Reconnect pooled connections this old, before an idle-timeout on the way closes them."""


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the engine for the configured database, tuned per backend."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            private_directory(settings.data_dir)
            private_file(Path(url.database))
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    # No pre-ping: it is a BEGIN/ROLLBACK round trip on every checkout, which doubled the
    # database's transaction rate and added a round trip to every agent connect. A
    # connection the database dropped fails its one statement instead; SQLAlchemy then
    # invalidates the whole pool, and every presence write is retried (test_hub.py).
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, enforced foreign keys, and write-locking transactions.

    Every transaction starts with ``BEGIN IMMEDIATE``: a deferred transaction that later writes
    fails at once with SQLITE_BUSY when another connection wrote meanwhile, while an immediate
    one waits its turn for the busy timeout. That is what makes concurrent enrollments safe.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


AFTER_COMMIT = "wiremesh.after_commit"
"""``session.info`` key of the callback run after each commit of that session."""


class WiremeshSession(Session):
    """A Session that can run a callback after it commits (the event readers' wake-up)."""


@event.listens_for(WiremeshSession, "after_commit")
def _run_after_commit(session: Session) -> None:
    callback = session.info.get(AFTER_COMMIT)
    if callback is not None:
        callback(session)


def create_sessionmaker(
    engine: AsyncEngine, *, after_commit: Callable[[Session], None] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions never expire loaded objects on commit: endpoints read them after the boundary.

    ``after_commit`` runs (synchronously, on the event loop) after every commit; the server
    uses it to wake its event reader when a transaction recorded events.
    """
    info: dict[str, Any] = {AFTER_COMMIT: after_commit} if after_commit else {}
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=WiremeshSession,
        info=info,
    )
