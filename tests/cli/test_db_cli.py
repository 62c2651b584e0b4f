"""`wiremesh db upgrade|downgrade|current`."""

from __future__ import annotations

import json

import pytest

from tests.cli.operator_cli import invoke
from wiremesh.server.config import Settings
from wiremesh.server.db import migrate

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
