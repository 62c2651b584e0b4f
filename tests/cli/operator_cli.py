"""Running the operator CLI against a test's database (helpers, not tests)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from click.testing import Result
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from wiremesh.cli import app
from wiremesh.server.config import Settings
from wiremesh.server.db.session import create_engine, create_sessionmaker

T = TypeVar("T")


def point_cli_at(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Make ``wiremesh`` read this test's database from the environment, like an operator's."""
    for key in list(os.environ):
        if key.startswith("WIREMESH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("WIREMESH_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("WIREMESH_DATABASE_URL", settings.database_url)
    if settings.smtp_allow_private_hosts:
        monkeypatch.setenv("WIREMESH_SMTP_ALLOW_PRIVATE_HOSTS", "true")


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def ok(*args: str, input: str | None = None) -> str:
    """Run a command that must succeed; its standard output."""
    result = invoke(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(*args: str, input: str | None = None) -> str:
    """Run a command that must fail cleanly: exit status 1, a reason on stderr, no
    traceback; the reason."""
    result = invoke(*args, input=input)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def query(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Look at the database from a synchronous test."""

    async def main() -> T:
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())
