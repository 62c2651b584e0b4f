"""Alembic environment: the URL comes from wiremesh settings; SQLite migrates in batch mode."""

from __future__ import annotations

import asyncio
import warnings

from alembic import context
from sqlalchemy.engine import Connection

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
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=False,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    settings = context.config.attributes.get("settings") or load_settings()
    engine = create_engine(settings)
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
