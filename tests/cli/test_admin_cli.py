"""`wiremesh admin bootstrap`."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, query
from wiremesh.server.auth.links import LinkPurpose, find_link
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


def test_bootstrap_prints_a_one_time_link_to_choose_the_dashboard_password(
    settings: Settings,
) -> None:
    result = invoke("admin", "bootstrap", "--email", "first@example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("wm_")  # stdout stays the token alone
    line = next(part for part in result.stderr.split() if "/password/choose?token=" in part)
    token = line.split("token=", 1)[1]

    async def owner(session: AsyncSession) -> str | None:
        found = await find_link(session, token, LinkPurpose.PASSWORD)
        return None if found is None else found[1].email

    assert query(settings, owner) == "first@example.com"


def test_password_link_gives_any_user_a_fresh_link_and_voids_the_old(settings: Settings) -> None:
    first = invoke("admin", "bootstrap", "--email", "first@example.com", "--json")
    old = first.stdout.split('"password_link": "', 1)[1].split('"', 1)[0].split("token=", 1)[1]
    result = invoke("admin", "password-link", "--email", "First@Example.com")
    assert result.exit_code == 0, result.output
    new = result.stdout.strip().split("token=", 1)[1]

    async def usable(session: AsyncSession) -> tuple[bool, bool]:
        return (
            await find_link(session, old, LinkPurpose.PASSWORD) is not None,
            await find_link(session, new, LinkPurpose.PASSWORD) is not None,
        )

    assert query(settings, usable) == (False, True)
    unknown = invoke("admin", "password-link", "--email", "nobody@example.com")
    assert unknown.exit_code == 1
    assert unknown.stdout == ""
