"""What every admin command shares: settings, one unit of work, clear errors, output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import typer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.config import Settings, load_settings
from wiremesh.server.db import migrate
from wiremesh.server.db.session import create_engine, create_sessionmaker
from wiremesh.server.errors import ApiError
from wiremesh.server.logs import configure_logging
from wiremesh.server.orgs.service import resolve_org
from wiremesh.server.tenancy import SERVER_SCOPE, OrgScope, TenantScope

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def cli_settings() -> Settings:
    """The settings, and the logging they ask for (every command logs the same way)."""
    try:
        settings = load_settings()
    except ValueError as exc:
        fail(f"invalid configuration: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    return settings


SCHEMA_NOT_CURRENT = (
    "the database schema is at revision {current}, this wiremesh needs {head}: "
    "run `wiremesh db upgrade`"
)


async def _ensure_schema(settings: Settings) -> None:
    """Commands run on the newest schema only, on either database. A new embedded SQLite
    database is created on first use; one at another revision (downgraded on purpose, or
    left by another version) is not silently migrated: the operator upgrades it."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(migrate.current_revision)
    finally:
        await engine.dispose()
    head = migrate.head_revision(settings)
    if current == head:
        return
    if current is None and settings.is_sqlite:
        await asyncio.to_thread(migrate.upgrade, settings)
        return
    fail(SCHEMA_NOT_CURRENT.format(current=current or "(empty)", head=head))


@asynccontextmanager
async def unit_of_work(settings: Settings | None = None) -> AsyncIterator[AsyncSession]:
    """One CLI command = one transaction: committed when the block ends without an error."""
    settings = settings or cli_settings()
    await _ensure_schema(settings)
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
            await session.commit()
    finally:
        await engine.dispose()


async def operator_scope(session: AsyncSession, org: str | None) -> TenantScope:
    """What the operator acts on: the org that ``--org`` names, else the whole server (the
    operator is a server administrator)."""
    if org is None:
        return SERVER_SCOPE
    return OrgScope((await resolve_org(session, org)).id)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body; an ApiError becomes a clear message and exit status 1.

    A statement the database refuses is a bug (input is validated first), but it still ends
    in one line: its traceback would print the SQL and its parameters, secrets' hashes included.
    """
    try:
        return asyncio.run(_call(work))
    except ApiError as exc:
        fail(f"{exc.message} ({exc.code})")
    except DBAPIError as exc:
        reason = type(exc.orig).__name__
        fail(f"the database refused or failed the command ({reason}); nothing was changed")


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def emit(data: Any, as_json: bool) -> None:
    """Print a result: JSON for scripts, aligned columns for people."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        typer.echo("(none)")
        return
    columns = list(rows[0].keys())
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    typer.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        typer.echo("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table")
