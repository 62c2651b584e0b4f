"""`wiremesh admin bootstrap`."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, query
from wiremesh.server.auth.service import authenticate_token
from wiremesh.server.config import Settings
from wiremesh.server.users.models import User

pytestmark = pytest.mark.usefixtures("cli_database")


def test_bootstrap_prints_a_working_token_once(settings: Settings) -> None:
    result = invoke("admin", "bootstrap")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("wm_")
    assert "shown only this once" in result.stderr

    async def who(session: AsyncSession) -> tuple[str, bool]:
        _token, user = await authenticate_token(session, token)
        return user.email, user.is_server_admin

    assert query(settings, who) == ("admin@localhost", True)


def test_a_second_bootstrap_is_refused(settings: Settings) -> None:
    assert invoke("admin", "bootstrap", "--email", "first@example.com").exit_code == 0
    again = invoke("admin", "bootstrap", "--email", "second@example.com")
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert again.stdout == ""

    async def count(session: AsyncSession) -> int:
        return (await session.execute(select(func.count()).select_from(User))).scalar_one()

    assert query(settings, count) == 1


def test_bootstrap_with_own_email_and_json() -> None:
    result = invoke("admin", "bootstrap", "--email", "Root@Example.com", "--name", "Root", "--json")
    assert result.exit_code == 0, result.output
    assert '"email": "root@example.com"' in result.stdout
    assert '"token": "wm_' in result.stdout


def test_bootstrap_refuses_a_bad_email() -> None:
    result = invoke("admin", "bootstrap", "--email", "not an email")
    assert result.exit_code == 1
    assert "validation_error" in result.stderr
