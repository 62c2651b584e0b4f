"""The CLI validates through the API's schemas: the same refusals, one clean line, no write
(issue #12: a 65-character setup-key name printed a traceback with the INSERT and the key's
hash on PostgreSQL, and was stored on SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, query
from wiremesh.server.config import Settings
from wiremesh.server.devices.models import SetupKey

pytestmark = pytest.mark.usefixtures("cli_database")


def _make_org() -> None:
    for args in (
        ("user", "create", "--email", "owner@acme.example.com", "--name", "Owner"),
        ("org", "create", "acme", "--owner", "owner@acme.example.com"),
    ):
        result = invoke(*args)
        assert result.exit_code == 0, result.output


def _keys(settings: Settings) -> int:
    async def work(session: AsyncSession) -> int:
        return (await session.execute(select(func.count()).select_from(SetupKey))).scalar_one()

    return query(settings, work)


@pytest.mark.parametrize(
    "args",
    [
        ("--name", "x" * 65),
        ("--name", "x" * 4096),
        ("--name", "a\x00b"),
        ("--name", "two\nlines"),
        ("--reusable", "--usage-limit", str(2**40)),
    ],
    ids=["name-65", "name-4096", "name-nul", "name-newline", "usage-limit-2^40"],
)
def test_setup_key_create_refuses_what_the_api_refuses(
    args: tuple[str, ...], settings: Settings
) -> None:
    _make_org()
    result = invoke("setup-key", "create", "--org", "acme", *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert "validation_error" in result.stderr
    assert "Traceback" not in result.output
    assert "INSERT" not in result.output
    assert len(result.stderr) < 400
    assert _keys(settings) == 0


def test_setup_key_revoke_refuses_an_id_no_column_holds(settings: Settings) -> None:
    _make_org()
    result = invoke("setup-key", "revoke", str(2**40), "--org", "acme")
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_device_lookup_by_an_id_no_column_holds_is_not_found(settings: Settings) -> None:
    _make_org()
    result = invoke("device", "revoke", "9999999999")
    assert result.exit_code == 1, result.output
    assert "not_found" in result.stderr
