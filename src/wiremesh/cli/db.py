"""`wiremesh db`: schema migrations (Alembic) on the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import typer
from alembic.util.exc import CommandError
from sqlalchemy.exc import SQLAlchemyError

from wiremesh.cli._common import JsonOption, cli_settings, emit, fail
from wiremesh.server.config import Settings
from wiremesh.server.db import migrate
from wiremesh.server.db.downgrade_loss import Dropped, Loss, dropped_by_downgrade, losses
from wiremesh.server.db.session import create_engine

app = typer.Typer(no_args_is_help=True, help="Database schema migrations.")

T = TypeVar("T")


def database_step(step: Callable[[], T]) -> T:
    """Run a migration step; a database or revision problem becomes a one-line error."""
    try:
        return step()
    except CommandError as exc:
        fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        fail(f"the database refused or is unreachable: {first_line}")


async def _current(settings: Settings) -> str | None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(migrate.current_revision)
    finally:
        await engine.dispose()


def current_revision(settings: Settings) -> str | None:
    return database_step(lambda: asyncio.run(_current(settings)))


@app.command("upgrade")
def upgrade(
    revision: str = typer.Option("head", "--revision", "-r", help="Target revision"),
) -> None:
    """Migrate the schema up to a revision (default: the newest)."""
    settings = cli_settings()
    database_step(lambda: migrate.upgrade(settings, revision))
    typer.echo(f"Database at revision {current_revision(settings) or '(empty)'}.")


async def _losses(settings: Settings, dropped: list[Dropped]) -> list[Loss]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(losses, dropped)
    finally:
        await engine.dispose()


@app.command("downgrade")
def downgrade(
    revision: str = typer.Option("-1", "--revision", "-r", help="Target revision; -1 = one back"),
    yes: bool = typer.Option(
        False, "--yes", help="Downgrade although dropped tables or columns hold data"
    ),
) -> None:
    """Migrate the schema down (default: one revision).

    Tables and columns the downgrade drops lose their data: when any of them holds some,
    it is listed and nothing happens without ``--yes``.
    """
    settings = cli_settings()
    current = current_revision(settings)
    if current is None:
        fail("the database has no schema to downgrade")
    dropped = database_step(lambda: dropped_by_downgrade(current, revision))
    lost = database_step(lambda: asyncio.run(_losses(settings, dropped)))
    if lost:
        typer.secho("This downgrade deletes data:", err=True, fg=typer.colors.YELLOW)
        for loss in lost:
            typer.secho(f"  {loss}", err=True, fg=typer.colors.YELLOW)
        if not yes:
            fail("nothing was changed; run it again with --yes to downgrade and lose this data")
    database_step(lambda: migrate.downgrade(settings, revision))
    typer.echo(f"Database at revision {current_revision(settings) or '(empty)'}.")


@app.command("current")
def current(as_json: bool = JsonOption) -> None:
    """Show the database's revision and whether it is the newest."""
    settings = cli_settings()
    revision = current_revision(settings)
    head = migrate.head_revision(settings)
    if as_json:
        emit({"current": revision, "head": head, "up_to_date": revision == head}, True)
        return
    state = "up to date" if revision == head else "behind: run `wiremesh db upgrade`"
    typer.echo(f"{revision or '(empty)'} (head {head}): {state}")
