"""`wiremesh relay`: run a relay (``up``, on the relay host) and, as the operator, manage
the relays' own credentials (``add``, ``list``, ``remove``, on the server's database)."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, emit, run, unit_of_work
from wiremesh.relay import cli as relay_cli
from wiremesh.server.paths import service
from wiremesh.server.paths.schemas import RelayCredentialCreate, RelayOut
from wiremesh.server.users.schemas import parse_input

app = typer.Typer(
    no_args_is_help=True,
    help="Relays: run one (up); give each its own credential (add, list, remove).",
)
app.command("up")(relay_cli.up)


def relay_row(relay: RelayOut) -> dict[str, Any]:
    return relay.model_dump(mode="json")


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The relay's --name: a-z, 0-9, '-'"),
    as_json: bool = JsonOption,
) -> None:
    """Give the relay NAME its own credential and print it, once (alone on stdout).

    The relay presents it as WIREMESH_RELAY_TOKEN; the global token no longer checks in
    as NAME.
    """

    async def work() -> dict[str, Any]:
        data = parse_input(RelayCredentialCreate, name=name)
        async with unit_of_work() as session:
            credential, plaintext = await service.add_relay_credential(session, data.name)
            return {
                "name": credential.name,
                "created_at": credential.created_at.isoformat(),
                "token": plaintext,
            }

    result = run(work)
    if as_json:
        emit(result, True)
        return
    typer.echo(
        f"Created the credential of relay {result['name']}; it is shown only this once "
        "(run the relay with it as WIREMESH_RELAY_TOKEN):",
        err=True,
    )
    typer.echo(result["token"])


@app.command("list")
def list_relays(as_json: bool = JsonOption) -> None:
    """List relays: credential (own or global token), online, endpoint, last seen, created.

    Every relay that has a credential or has checked in since it was last removed.
    """

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            return [relay_row(relay) for relay in await service.list_relays(session)]

    emit(run(work), as_json)


@app.command("remove")
def remove(name: str = typer.Argument(..., help="The relay's name (see `relay list`)")) -> None:
    """Delete the relay's credential and forget it; agents drop it at once.

    A relay on the global token comes back at its next check-in.
    """

    async def work() -> None:
        async with unit_of_work() as session:
            await service.remove_relay(session, name)

    run(work)
    typer.echo(f"Removed relay {name}.")
