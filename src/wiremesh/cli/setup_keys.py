"""`wiremesh setup-key`: keys that enroll devices into an organization."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, emit, fail, run, unit_of_work
from wiremesh.durations import parse_duration
from wiremesh.server.devices import repository, service
from wiremesh.server.devices.models import SetupKey
from wiremesh.server.devices.schemas import SetupKeyCreate
from wiremesh.server.orgs.service import resolve_org
from wiremesh.server.users import service as users_service
from wiremesh.server.validation import MAX_DB_ID, parse_input

app = typer.Typer(no_args_is_help=True, help="Setup keys that enroll devices.")

OrgOption = typer.Option(..., "--org", help="Organization id or name")


def key_row(key: SetupKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "reusable": key.reusable,
        "usage_limit": key.usage_limit,
        "used": key.used_count,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked": key.revoked_at is not None,
        "usable": service.setup_key_usable(key),
    }


@app.command("create")
def create(
    org: str = OrgOption,
    name: str = typer.Option("cli", "--name", help="A label for the key"),
    reusable: bool = typer.Option(False, "--reusable", help="Enroll many devices, not one"),
    usage_limit: int | None = typer.Option(None, "--usage-limit", help="Reusable: at most"),
    expires: str | None = typer.Option(None, "--expires", help="Lifetime, e.g. 1h, 7d"),
    user: str | None = typer.Option(None, "--user", help="E-mail of the devices' owner"),
    as_json: bool = JsonOption,
) -> None:
    """Create a setup key and print it once (only its hash is stored)."""
    try:
        lifetime = parse_duration(expires) if expires else None
    except ValueError as exc:
        fail(str(exc))

    async def work() -> dict[str, Any]:
        # The API's own schema: the same names and bounds are refused here. The lifetime is
        # checked by the service (the same bounds), which names it as --expires gives it.
        data = parse_input(SetupKeyCreate, name=name, reusable=reusable, usage_limit=usage_limit)
        async with unit_of_work() as session:
            organization = await resolve_org(session, org)
            if user is not None:
                owner = (await users_service.get_user_by_email(session, user)).id
            else:
                owner = await service.default_key_owner(session, organization.id)
            key, plaintext = await service.create_setup_key(
                session,
                organization.id,
                owner_user_id=owner,
                name=data.name,
                reusable=data.reusable,
                usage_limit=data.usage_limit,
                expires_in=lifetime,
            )
            return {**key_row(key), "key": plaintext}

    result = run(work)
    if as_json:
        emit(result, True)
        return
    typer.echo(result["key"])
    typer.echo(
        f"setup key {result['id']} for {org}: shown once, keep it safe "
        f"(reusable: {'yes' if reusable else 'no'})",
        err=True,
    )


@app.command("list")
def list_keys(org: str = OrgOption, as_json: bool = JsonOption) -> None:
    """List an organization's setup keys (never the keys themselves)."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            organization = await resolve_org(session, org)
            return [key_row(k) for k in await repository.list_setup_keys(session, organization.id)]

    emit(run(work), as_json)


@app.command("revoke")
def revoke(key_id: int = typer.Argument(..., min=1, max=MAX_DB_ID), org: str = OrgOption) -> None:
    """Revoke a setup key; devices it already enrolled stay."""

    async def work() -> None:
        async with unit_of_work() as session:
            organization = await resolve_org(session, org)
            await service.revoke_setup_key(session, organization.id, key_id)

    run(work)
    typer.echo(f"setup key {key_id} revoked")
