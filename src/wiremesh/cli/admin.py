"""`wiremesh admin`: server administration that needs no API token (the operator's console)."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, emit, run, unit_of_work
from wiremesh.cli.users import user_row
from wiremesh.server.users import service as users_service
from wiremesh.server.users.schemas import BootstrapAdmin, parse_input

app = typer.Typer(no_args_is_help=True, help="Server administration from the console.")


@app.command("bootstrap")
def bootstrap(
    email: str = typer.Option(
        users_service.DEFAULT_ADMIN_EMAIL, "--email", help="E-mail of the first administrator"
    ),
    name: str = typer.Option(users_service.DEFAULT_ADMIN_NAME, "--name", help="Display name"),
    as_json: bool = JsonOption,
) -> None:
    """Create the first server administrator and print its API token, once.

    Refused when a server administrator exists already.
    """

    async def work() -> dict[str, Any]:
        data = parse_input(BootstrapAdmin, email=email, name=name)
        async with unit_of_work() as session:
            user, token = await users_service.bootstrap_admin(
                session, email=data.email, name=data.name
            )
            return {"user": user_row(user), "token": token}

    result = run(work)
    if as_json:
        emit(result, True)
        return
    typer.echo(
        f"Created the server administrator {result['user']['email']} "
        f"(id {result['user']['id']}). Its API token is shown only this once:",
        err=True,
    )
    typer.echo(result["token"])
