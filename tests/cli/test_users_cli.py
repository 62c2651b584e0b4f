"""`wiremesh user` and `wiremesh token`."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, ok, query
from wiremesh.server.auth.service import authenticate_token
from wiremesh.server.config import Settings
from wiremesh.server.errors import ApiError

pytestmark = pytest.mark.usefixtures("cli_database")


def token_user(settings: Settings, token: str) -> str | None:
    async def who(session: AsyncSession) -> str | None:
        try:
            _token, user = await authenticate_token(session, token)
        except ApiError:
            return None
        return user.email

    return query(settings, who)


def test_create_and_list_users() -> None:
    created = json.loads(
        ok("user", "create", "--email", "Ann@Example.com", "--name", "Ann", "--json")
    )
    assert (created["email"], created["server_admin"]) == ("ann@example.com", False)
    ok("user", "create", "--email", "root@example.com", "--name", "Root", "--server-admin")
    listed = json.loads(ok("user", "list", "--json"))
    assert [(u["email"], u["server_admin"]) for u in listed] == [
        ("ann@example.com", False),
        ("root@example.com", True),
    ]
    assert "root@example.com" in ok("user", "list")


def test_user_refusals() -> None:
    ok("user", "create", "--email", "ann@example.com", "--name", "Ann")
    for args, words in [
        (("--email", "ANN@example.com", "--name", "Twin"), "email_taken"),
        (("--email", "nope", "--name", "X"), "validation_error"),
        (("--email", "x@example.com", "--name", "x" * 200), "at most 128"),
    ]:
        result = invoke("user", "create", *args)
        assert result.exit_code == 1
        assert words in result.stderr
    assert len(json.loads(ok("user", "list", "--json"))) == 1


def test_token_create_prints_only_the_token_on_stdout(settings: Settings) -> None:
    ok("user", "create", "--email", "ann@example.com", "--name", "Ann")
    result = invoke("token", "create", "--user", "ann@example.com", "--name", "ci")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token
    assert token_user(settings, token) == "ann@example.com"
    assert "shown only this once" in result.stderr
    listed = ok("token", "list", "--user", "ann@example.com")
    assert "ci" in listed
    assert token not in listed


def test_token_expiry_and_json() -> None:
    ok("user", "create", "--email", "ann@example.com", "--name", "Ann")
    created = json.loads(
        ok(
            "token",
            "create",
            "--user",
            "ann@example.com",
            "--name",
            "ci",
            "--expires-days",
            "3",
            "--json",
        )
    )
    assert created["expires_at"] is not None
    assert created["token"].startswith("wm_")
    for days in ("0", "4000"):
        refused = invoke(
            "token", "create", "--user", "ann@example.com", "--name", "x", "--expires-days", days
        )
        assert refused.exit_code == 1
        assert "expires_in_days" in refused.stderr


def test_token_revoke(settings: Settings) -> None:
    ok("user", "create", "--email", "ann@example.com", "--name", "Ann")
    created = json.loads(
        ok("token", "create", "--user", "ann@example.com", "--name", "ci", "--json")
    )
    assert "Revoked token" in ok("token", "revoke", str(created["id"]))
    assert token_user(settings, created["token"]) is None
    listed = json.loads(ok("token", "list", "--user", "ann@example.com", "--json"))
    assert listed[0]["revoked_at"] is not None
    for token_id in ("999999", "99999999999999"):
        missing = invoke("token", "revoke", token_id)
        assert missing.exit_code == 1
        assert "token not found" in missing.stderr


def test_token_for_an_unknown_user() -> None:
    result = invoke("token", "create", "--user", "nobody@example.com", "--name", "x")
    assert result.exit_code == 1
    assert "user not found" in result.stderr
