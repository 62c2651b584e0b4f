"""Alembic environment: the URL comes from wiremesh settings; SQLite migrates in batch mode."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from wiremesh.server.config import load_settings
from wiremesh.server.db.models import Base
from wiremesh.server.db.session import create_engine
from wiremesh.server.mail.models import GLOBAL_SMTP_UNIQUE_INDEX

target_metadata = Base.metadata

# The one-global-row index is an expression index, which SQLite cannot reflect; its behaviour
# is tested directly (a second global row is refused), so autogenerate leaves it out.
warnings.filterwarnings("ignore", message=f".*{GLOBAL_SMTP_UNIQUE_INDEX}.*")


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    return not (type_ == "index" and name == GLOBAL_SMTP_UNIQUE_INDEX)


def _configure_and_run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
        compare_server_default=False,
        include_object=_include_object,
        on_version_apply=_check_foreign_keys if sqlite else None,
    )
    with context.begin_transaction():
        context.run_migrations()


def _sqlite_foreign_keys_off(engine: AsyncEngine) -> None:
    """Migrate SQLite with foreign keys unenforced, as batch mode needs.

    A batch migration rebuilds a table (copy, DROP, rename). With enforcement on, dropping a
    parent table runs an implicit DELETE that cascades: every child row (memberships, devices,
    connection history, ...) would silently go. The pragma is a no-op inside a transaction,
    so it is set when the connection opens, after the engine's own pragmas.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _off(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()


def _check_foreign_keys(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """After each SQLite revision, inside its transaction: refuse (so roll back) a revision
    that left rows pointing at nothing, since enforcement is off while migrating."""
    if ctx.connection is None:
        return
    violations = ctx.connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        shown = ", ".join(f"{row[0]} rowid {row[1]} -> {row[2]}" for row in violations[:10])
        raise RuntimeError(f"the migration broke {len(violations)} foreign key(s): {shown}")


async def _run_async() -> None:
    settings = context.config.attributes.get("settings") or load_settings()
    engine = create_engine(settings)
    if engine.dialect.name == "sqlite":
        _sqlite_foreign_keys_off(engine)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
