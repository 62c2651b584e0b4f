"""`wiremesh token`: API tokens of any user (as the operator)."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, emit, fail, run, unit_of_work
from wiremesh.server.auth import service as auth_service
from wiremesh.server.auth.models import ApiToken
from wiremesh.server.auth.principal import operator_principal
from wiremesh.server.auth.schemas import MAX_TOKEN_DAYS, TokenCreate
from wiremesh.server.users import service as users_service
from wiremesh.server.users.schemas import MAX_DB_ID, parse_input

app = typer.Typer(no_args_is_help=True, help="API tokens.")


def token_row(token: ApiToken) -> dict[str, Any]:
    """A token's metadata; the secret is never stored, so it cannot appear here."""
    return {
        "id": token.id,
        "user_id": token.user_id,
        "name": token.name,
        "created_at": token.created_at.isoformat(),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


@app.command("create")
def create(
    user: str = typer.Option(..., "--user", help="E-mail of the token's user"),
    name: str = typer.Option(..., "--name", help="What the token is for"),
    expires_days: int | None = typer.Option(
        None, "--expires-days", help=f"Expire after this many days (1..{MAX_TOKEN_DAYS})"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create an API token and print it, once (the token alone on stdout, for scripts)."""

    async def work() -> dict[str, Any]:
        data = parse_input(TokenCreate, name=name, expires_in_days=expires_days)
        async with unit_of_work() as session:
            owner = await users_service.get_user_by_email(session, user)
            token, plaintext = await auth_service.issue_token(
                session, owner, data.name, data.expires_in_days
            )
            return {**token_row(token), "token": plaintext}

    result = run(work)
    if as_json:
        emit(result, True)
        return
    typer.echo(
        f"Created token {result['id']} ({result['name']}) for {user}; it is shown only this once:",
        err=True,
    )
    typer.echo(result["token"])


@app.command("list")
def list_tokens(
    user: str = typer.Option(..., "--user", help="E-mail of the tokens' user"),
    as_json: bool = JsonOption,
) -> None:
    """List a user's tokens (never their secrets)."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            owner = await users_service.get_user_by_email(session, user)
            return [token_row(token) for token in await auth_service.list_tokens(session, owner.id)]

    emit(run(work), as_json)


@app.command("revoke")
def revoke(token_id: int = typer.Argument(..., help="The token's id (see `token list`)")) -> None:
    """Revoke a token; requests with it are refused from now on."""
    if not 1 <= token_id <= MAX_DB_ID:
        fail(f"token not found (not_found): no token has the id {token_id}")

    async def work() -> None:
        async with unit_of_work() as session:
            await auth_service.revoke_token(session, operator_principal(), token_id)

    run(work)
    typer.echo(f"Revoked token {token_id}.")
