"""`wiremesh user`: create and list users (as the operator, a server administrator)."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, emit, run, unit_of_work
from wiremesh.server.users import service as users_service
from wiremesh.server.users.models import User
from wiremesh.server.users.schemas import UserCreate, parse_input

app = typer.Typer(no_args_is_help=True, help="Users of the server.")


def user_row(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "server_admin": user.is_server_admin,
        "active": user.is_active,
        "created_at": user.created_at.isoformat(),
    }


@app.command("create")
def create(
    email: str = typer.Option(..., "--email", help="Unique e-mail address"),
    name: str = typer.Option(..., "--name", help="Display name"),
    server_admin: bool = typer.Option(
        False, "--server-admin", help="Make the user a server administrator"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a user."""

    async def work() -> dict[str, Any]:
        data = parse_input(UserCreate, email=email, name=name, is_server_admin=server_admin)
        async with unit_of_work() as session:
            user = await users_service.create_user(
                session, email=data.email, name=data.name, is_server_admin=data.is_server_admin
            )
            return user_row(user)

    emit(run(work), as_json)


@app.command("list")
def list_users(
    limit: int = typer.Option(1000, "--limit", min=1, max=100_000, help="At most this many"),
    as_json: bool = JsonOption,
) -> None:
    """List users."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            users = await users_service.list_users(session, limit=limit)
            return [user_row(user) for user in users]

    emit(run(work), as_json)
