"""`wiremesh db upgrade|downgrade|current`, and commands on a schema that is not the newest."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, ok, query
from wiremesh.server.config import Settings
from wiremesh.server.db import migrate
from wiremesh.server.mail.models import MailOutbox

pytestmark = pytest.mark.usefixtures("cli_database")


def current() -> dict[str, object]:
    result = invoke("db", "current", "--json")
    assert result.exit_code == 0, result.output
    state: dict[str, object] = json.loads(result.stdout)
    return state


def test_current_on_a_migrated_database(settings: Settings) -> None:
    assert current() == {
        "current": migrate.head_revision(settings),
        "head": migrate.head_revision(settings),
        "up_to_date": True,
    }
    assert "up to date" in invoke("db", "current").stdout


def test_downgrade_then_upgrade(settings: Settings) -> None:
    head = migrate.head_revision(settings)
    down = invoke("db", "downgrade")
    assert down.exit_code == 0, down.output
    after_down = current()
    assert after_down["up_to_date"] is False
    assert after_down["current"] != head
    assert "behind" in invoke("db", "current").stdout

    up = invoke("db", "upgrade")
    assert up.exit_code == 0, up.output
    assert str(head) in up.stdout
    assert current()["up_to_date"] is True


def test_downgrade_to_an_explicit_revision_and_back() -> None:
    result = invoke("db", "downgrade", "--revision", "initial_schema")
    assert result.exit_code == 0, result.output
    assert current()["current"] == "initial_schema"
    assert invoke("db", "upgrade", "--revision", "head").exit_code == 0


def test_unknown_revision_is_a_clear_error() -> None:
    result = invoke("db", "upgrade", "--revision", "no_such_revision")
    assert result.exit_code == 1
    assert "no_such_revision" in result.stderr
    assert "Traceback" not in result.output


def test_a_downgrade_that_drops_data_says_what_and_asks_for_yes(settings: Settings) -> None:
    head = migrate.head_revision(settings)
    ok(
        "smtp", "set", "--server", "smtp.example.com", "--port", "587",
        "--from", "noreply@example.com", "--tls-mode", "starttls",
    )  # fmt: skip

    async def queue_a_mail(session: AsyncSession) -> None:
        session.add(MailOutbox(org_id=None, kind="test", to="a@example.org", subject="s", text="t"))
        await session.commit()

    query(settings, queue_a_mail)
    before_mail = "connection_session_details"

    refused = invoke("db", "downgrade", "--revision", before_mail)
    assert refused.exit_code == 1, refused.output
    assert "This downgrade deletes data:" in refused.stderr
    assert "table mail_outbox: 1 row\n" in refused.stderr
    assert "column smtp_settings.tls_mode: 1 value\n" in refused.stderr
    assert "table org_invitation" not in refused.stderr  # empty: nothing is lost
    assert "nothing was changed; run it again with --yes" in refused.stderr
    assert "Traceback" not in refused.output
    assert current()["current"] == head

    done = invoke("db", "downgrade", "--revision", before_mail, "--yes")
    assert done.exit_code == 0, done.output
    assert "table mail_outbox: 1 row" in done.stderr
    assert current()["current"] == before_mail


def test_commands_refuse_a_schema_that_is_not_the_newest(settings: Settings) -> None:
    """The same on SQLite and PostgreSQL: no command migrates behind the operator's back."""
    head = migrate.head_revision(settings)
    assert invoke("db", "downgrade").exit_code == 0  # drops only empty tables: no --yes
    below = current()["current"]

    result = invoke("org", "list")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: the database schema is at revision {below}, this wiremesh needs {head}: "
        "run `wiremesh db upgrade`\n"
    )
    assert current()["current"] == below  # not upgraded silently

    assert invoke("db", "upgrade").exit_code == 0
    assert invoke("org", "list").exit_code == 0
