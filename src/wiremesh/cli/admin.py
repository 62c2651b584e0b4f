"""`wiremesh admin`: server administration that needs no API token (the operator's console)."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, cli_settings, emit, run, unit_of_work
from wiremesh.cli.users import user_row
from wiremesh.server.auth.links import PRINTED_TTL, printed_password_link
from wiremesh.server.orgs.invitations import public_base_url
from wiremesh.server.users import service as users_service
from wiremesh.server.users.schemas import BootstrapAdmin, parse_input

app = typer.Typer(no_args_is_help=True, help="Server administration from the console.")
_LINK_HOURS = int(PRINTED_TTL.total_seconds() // 3600)


@app.command("bootstrap")
def bootstrap(
    email: str = typer.Option(
        users_service.DEFAULT_ADMIN_EMAIL, "--email", help="E-mail of the first administrator"
    ),
    name: str = typer.Option(users_service.DEFAULT_ADMIN_NAME, "--name", help="Display name"),
    as_json: bool = JsonOption,
) -> None:
    """Create the first server administrator; print its API token once, and a one-time link
    to choose its password for the web dashboard.

    Refused when a server administrator exists already.
    """
    settings = cli_settings()

    async def work() -> dict[str, Any]:
        data = parse_input(BootstrapAdmin, email=email, name=name)
        async with unit_of_work(settings) as session:
            user, token = await users_service.bootstrap_admin(
                session, email=data.email, name=data.name
            )
            link = await printed_password_link(session, user, public_base_url(settings))
            return {"user": user_row(user), "token": token, "password_link": link}

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
    typer.echo(
        f"To sign in to the dashboard, open this link within {_LINK_HOURS} h and choose a "
        f"password (it works once):\n  {result['password_link']}",
        err=True,
    )


@app.command("password-link")
def password_link(
    email: str = typer.Option(..., "--email", help="E-mail of the user"),
) -> None:
    """Print a one-time link that lets a user choose a new dashboard password (when no mail
    can reach them, or the first link expired)."""
    settings = cli_settings()

    async def work() -> str:
        async with unit_of_work(settings) as session:
            user = await users_service.get_user_by_email(session, email)
            return await printed_password_link(session, user, public_base_url(settings))

    link = run(work)
    typer.echo(f"Open within {_LINK_HOURS} h; it works once:", err=True)
    typer.echo(link)
