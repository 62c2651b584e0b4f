"""`wiremesh device`: enrolled devices, their lifecycle, connection history and paths."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.cli._common import JsonOption, emit, fail, run, unit_of_work
from wiremesh.durations import parse_duration
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices import repository, service
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.devices.schemas import DeviceUpdate
from wiremesh.server.errors import Conflict
from wiremesh.server.orgs.service import resolve_org
from wiremesh.server.paths import service as paths_service
from wiremesh.server.presence import monitoring
from wiremesh.server.users.schemas import parse_input

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Enrolled devices. Running servers apply a rename, revoke or delete made here "
        "within a second: on PostgreSQL at once, on SQLite at their next read of changes "
        "(WIREMESH_EVENT_POLL_INTERVAL)."
    ),
)

MAX_HISTORY_PERIOD = timedelta(days=3650)
MAX_FLAP_WINDOW = timedelta(days=1)
"""The API's bounds; beyond them the dates would overflow or the answer would mean nothing."""

DeviceArgument = typer.Argument(..., help="Device id, peer id, hostname or virtual IP")
OrgFilter = typer.Option(None, "--org", help="Organization id or name")


def device_row(device: VirtualIPMapping) -> dict[str, Any]:
    return {
        "id": device.id,
        "org_id": device.org_id,
        "hostname": device.hostname,
        "peer_id": device.peer_id,
        "virtual_ip": device.virtual_ip,
        "public_key": device.public_key,
        "last_seen_at": device.last_seen_at.isoformat() if device.last_seen_at else None,
        "revoked": device.revoked_at is not None,
    }


async def _resolve(session: AsyncSession, ref: str, org: str | None) -> VirtualIPMapping:
    org_id = (await resolve_org(session, org)).id if org else None
    return await service.resolve_device(session, ref, org_id)


async def _resolve_active(session: AsyncSession, ref: str, org: str | None) -> VirtualIPMapping:
    """:func:`_resolve`, but a name the org's revoked devices share with one active device (a
    device revoked and enrolled again under its name) means the active one."""
    try:
        return await _resolve(session, ref, org)
    except Conflict:
        if org is None:
            raise
    organization = await resolve_org(session, org)
    text = ref.strip()
    matching = [
        found
        for found in await repository.list_devices(session, organization.id)
        if text in (found.hostname, found.peer_id, found.virtual_ip, str(found.id))
    ]
    active = [found for found in matching if found.revoked_at is None]
    if len(active) == 1:
        return active[0]
    described = ", ".join(
        f"{found.id}{' (revoked)' if found.revoked_at is not None else ''}" for found in matching
    )
    fail(f"{ref!r} names several devices of {org} (ids {described}); give the device id")


@app.command("list")
def list_devices(org: str = typer.Option(..., "--org"), as_json: bool = JsonOption) -> None:
    """List an organization's devices."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            organization = await resolve_org(session, org)
            return [device_row(d) for d in await repository.list_devices(session, organization.id)]

    emit(run(work), as_json)


@app.command("rename")
def rename(
    device: str = DeviceArgument,
    hostname: str = typer.Argument(..., help="The new name"),
    org: str | None = OrgFilter,
    as_json: bool = JsonOption,
) -> None:
    """Give a device a new name."""

    async def work() -> dict[str, Any]:
        data = parse_input(DeviceUpdate, hostname=hostname)
        async with unit_of_work() as session:
            found = await _resolve(session, device, org)
            renamed = await service.rename_device(session, found.org_id, found.id, data.hostname)
            return device_row(renamed)

    emit(run(work), as_json)


@app.command("revoke")
def revoke(device: str = DeviceArgument, org: str | None = OrgFilter) -> None:
    """Revoke a device: its session is closed and its credential refused from now on."""

    async def work() -> str:
        async with unit_of_work() as session:
            found = await _resolve(session, device, org)
            await service.revoke_device(session, found.org_id, found.id)
            return found.hostname

    typer.echo(f"device {run(work)} revoked")


@app.command("delete")
def delete(
    device: str = DeviceArgument,
    org: str | None = OrgFilter,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
) -> None:
    """Delete a device; its virtual IP returns to the pool, its history stays."""
    if not yes:
        typer.confirm(f"Delete device {device}?", abort=True)

    async def work() -> str:
        async with unit_of_work() as session:
            found = await _resolve(session, device, org)
            await service.delete_device(session, found.org_id, found.id)
            return found.hostname

    typer.echo(f"device {run(work)} deleted")


@app.command("history")
def history(
    device: str = DeviceArgument,
    org: str | None = OrgFilter,
    period: str = typer.Option("7d", "--period", help="How far back, e.g. 24h, 7d"),
    flap_window: str = typer.Option("60s", "--flap-window", help="Reconnect within = a flap"),
    as_json: bool = JsonOption,
) -> None:
    """A device's sessions: when, how long, how each ended; timeouts and flaps."""
    try:
        span = parse_duration(period)
        window = parse_duration(flap_window)
    except ValueError as exc:
        fail(str(exc))
    if span > MAX_HISTORY_PERIOD:
        fail(f"--period {period} is too long: at most {MAX_HISTORY_PERIOD.days} days")
    if window > MAX_FLAP_WINDOW:
        fail(f"--flap-window {flap_window} is too long: at most 1 day")

    async def work() -> tuple[dict[str, Any], datetime | None]:
        async with unit_of_work() as session:
            found = await _resolve_active(session, device, org)
            until = utcnow()
            since = until - span
            result = await monitoring.device_history(
                session, found, since=since, until=until, flap_window=window
            )
            # Availability counts from the enrollment when that falls inside the period.
            enrolled = found.created_at if found.created_at > since else None
            return result.model_dump(mode="json"), enrolled

    result, enrolled = run(work)
    if as_json:
        emit(result, True)
        return
    summary = result["summary"]
    measured = (
        f"over {period}"
        if enrolled is None
        else f"since its enrollment at {enrolled.isoformat(timespec='seconds')}"
    )
    typer.echo(
        f"{result['hostname']} ({result['peer_id']}): {summary['sessions']} sessions, "
        f"{summary['timeouts']} timeouts, {summary['flaps']} flaps, "
        f"availability {summary['availability']:.1%} {measured}"
    )
    emit(
        [
            {
                "connected_at": s["connected_at"],
                "ended": s["disconnected_at"],
                "duration": _duration(s["duration_seconds"]),
                "status": s["status"],
                "reason": s["end_reason"],
                "public_ip": s["public_ip"],
            }
            for s in result["sessions"]
        ],
        False,
    )


@app.command("paths")
def paths(
    device: str = DeviceArgument, org: str | None = OrgFilter, as_json: bool = JsonOption
) -> None:
    """How the device reaches each peer, as its agent last reported: the path (direct,
    local, relay or none), the endpoint and the age of the last handshake."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            found = await _resolve(session, device, org)
            rows = await paths_service.device_paths(session, found)
            return [row.model_dump(mode="json") for row in rows]

    rows = run(work)
    if as_json:
        emit(rows, True)
        return
    emit(
        [
            {
                "peer": row["hostname"],
                "path": row["path"],
                "endpoint": row["endpoint"],
                "handshake": _age(row["handshake_age_seconds"]),
                "reported_at": row["reported_at"],
            }
            for row in rows
        ],
        False,
    )


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{_duration(seconds)} ago"


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return str(timedelta(seconds=round(seconds)))
