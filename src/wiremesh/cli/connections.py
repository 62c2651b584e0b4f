"""`wiremesh connections`, `wiremesh ips` and `wiremesh cleanup`: the seed's monitoring
questions and the retention job, against the configured database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from wiremesh.cli._common import (
    JsonOption,
    cli_settings,
    emit,
    fail,
    operator_scope,
    run,
    unit_of_work,
)
from wiremesh.durations import parse_duration
from wiremesh.server.db.session import create_engine, create_sessionmaker
from wiremesh.server.presence import monitoring
from wiremesh.server.presence.cleanup import delete_old_connections
from wiremesh.server.presence.models import ConnectionState
from wiremesh.server.presence.schemas import ConnectionOut

app = typer.Typer(no_args_is_help=True, help="Who is online, who is at risk, and the history.")
ips_app = typer.Typer(no_args_is_help=True, help="Virtual IP addresses.")

OrgFilter = typer.Option(None, "--org", help="Only this organization (id or name)")

# The API's bounds; beyond them "now minus the value" would overflow the date range.
MAX_SILENCE_SECONDS = 86_400 * 365
MAX_UNUSED_HOURS = 24 * 3650
MAX_RETENTION = timedelta(days=36_500)


def _when(moment: datetime | None) -> str | None:
    """A timestamp for a table: UTC to the second, ``Z`` instead of ``+00:00``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def connection_row(item: ConnectionOut, *, ended: bool = True) -> dict[str, Any]:
    """One table row; ``ended=False`` leaves out the end of the session (live ones only)."""
    row: dict[str, Any] = {
        "org_id": item.org_id,
        "user": item.user_email,
        "hostname": item.hostname,
        "virtual_ip": item.virtual_ip,
        "public": f"{item.public_ip}:{item.public_port}" if item.public_ip else None,
        "status": item.status,
        "connected_at": _when(item.connected_at),
    }
    if ended:
        row["disconnected_at"] = _when(item.disconnected_at)
    row["last_seen_at"] = _when(item.last_seen_at)
    if ended:
        row["end_reason"] = item.end_reason
    return row


@app.command("list")
def list_connections(
    org: str | None = OrgFilter,
    status: ConnectionState | None = typer.Option(
        None, "--status", help="connected (who is online), disconnected or timeout"
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000),
    as_json: bool = JsonOption,
) -> None:
    """Connections, most recent activity first."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            scope = await operator_scope(session, org)
            items = await monitoring.list_connections(session, scope, status=status, limit=limit)
            return [i.model_dump(mode="json") if as_json else connection_row(i) for i in items]

    emit(run(work), as_json)


@app.command("at-risk")
def at_risk(
    org: str | None = OrgFilter,
    seconds: float | None = typer.Option(
        None,
        "--seconds",
        min=0.001,
        max=MAX_SILENCE_SECONDS,
        help="No pong for longer than this; default 2 intervals",
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000),
    as_json: bool = JsonOption,
) -> None:
    """Live connections that have not answered a ping for a while."""
    settings = cli_settings()
    silence = timedelta(seconds=seconds or 2 * settings.heartbeat_interval)

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work(settings) as session:
            scope = await operator_scope(session, org)
            items = await monitoring.at_risk(session, scope, silent_for=silence, limit=limit)
            return [
                i.model_dump(mode="json") if as_json else connection_row(i, ended=False)
                for i in items
            ]

    emit(run(work), as_json)


@ips_app.command("stale")
def stale(
    org: str | None = OrgFilter,
    hours: float = typer.Option(
        24.0, "--hours", min=0.001, max=MAX_UNUSED_HOURS, help="Unused for this long"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Virtual IPs unused for N hours, or never used: candidates for cleanup."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            scope = await operator_scope(session, org)
            items = await monitoring.stale_addresses(
                session, scope, unused_for=timedelta(hours=hours), limit=100_000
            )
            return [i.model_dump(mode="json") for i in items]

    emit(run(work), as_json)


def cleanup(
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        help="Retention, e.g. 30d (default: WIREMESH_CONNECTION_RETENTION_DAYS)",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Delete ended connection rows older than the retention period (never a live one)."""
    settings = cli_settings()
    try:
        retention = (
            parse_duration(older_than)
            if older_than
            else timedelta(days=settings.connection_retention_days)
        )
    except ValueError as exc:
        fail(str(exc))
    if retention > MAX_RETENTION:
        fail(f"--older-than {older_than} is too long: at most {MAX_RETENTION.days} days")

    async def work() -> dict[str, Any]:
        async with unit_of_work(settings):
            pass  # makes sure the schema is current before deleting
        engine = create_engine(settings)
        try:
            deleted, cutoff = await delete_old_connections(
                create_sessionmaker(engine), retention, settings.cleanup_batch_size
            )
        finally:
            await engine.dispose()
        return {"deleted": deleted, "cutoff": cutoff.isoformat(timespec="seconds")}

    result = run(work)
    if as_json:
        emit(result, True)
    else:
        typer.echo(
            f"deleted {result['deleted']} connection rows that ended before {result['cutoff']}"
        )


def register(root: typer.Typer) -> None:
    """`connections`, `ips` and `cleanup` at the top level."""
    root.add_typer(app, name="connections")
    root.add_typer(ips_app, name="ips")
    root.command("cleanup")(cleanup)
