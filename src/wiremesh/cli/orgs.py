"""`wiremesh org`: create, list and delete organizations (as the operator)."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, cli_settings, emit, run, unit_of_work
from wiremesh.server.auth.principal import operator_principal
from wiremesh.server.orgs import service as orgs_service
from wiremesh.server.orgs.models import Organization
from wiremesh.server.orgs.schemas import OrgCreate
from wiremesh.server.users import service as users_service
from wiremesh.server.users.schemas import parse_input

app = typer.Typer(no_args_is_help=True, help="Organizations (tenants) and their networks.")


def org_row(org: Organization) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "network_cidr": org.network_cidr,
        "created_at": org.created_at.isoformat(),
    }


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Lowercase letters, digits and hyphens"),
    network: str | None = typer.Option(
        None, "--network", help="IPv4 CIDR inside the pool; default: the first free block"
    ),
    owner: str | None = typer.Option(None, "--owner", help="E-mail of a user to make owner"),
    as_json: bool = JsonOption,
) -> None:
    """Create an organization with its own network."""
    settings = cli_settings()

    async def work() -> dict[str, Any]:
        data = parse_input(OrgCreate, name=name, network_cidr=network)
        async with unit_of_work(settings) as session:
            owner_id = None
            if owner is not None:
                owner_id = (await users_service.get_user_by_email(session, owner)).id
            org = await orgs_service.create_org(
                session,
                settings,
                name=data.name,
                network_cidr=data.network_cidr,
                owner_user_id=owner_id,
            )
            return org_row(org)

    emit(run(work), as_json)


@app.command("list")
def list_orgs(
    limit: int = typer.Option(1000, "--limit", min=1, max=100_000, help="At most this many"),
    as_json: bool = JsonOption,
) -> None:
    """List every organization."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            rows = await orgs_service.list_orgs(session, operator_principal(), limit=limit)
            return [org_row(org) for org, _role in rows]

    emit(run(work), as_json)


@app.command("delete")
def delete(
    org: str = typer.Argument(..., help="Organization id or name"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
) -> None:
    """Delete an organization with its members, devices, keys and connection history."""

    async def find() -> Organization:
        async with unit_of_work() as session:
            return await orgs_service.resolve_org(session, org)

    found = run(find)
    if not yes:
        typer.confirm(
            f"Delete organization {found.name!r} (id {found.id}) and everything in it?", abort=True
        )

    async def work() -> None:
        async with unit_of_work() as session:
            await orgs_service.delete_org(session, operator_principal(), found.id)

    run(work)
    typer.echo(f"Deleted organization {found.name} (id {found.id}).")
