"""Fixtures of the operator CLI tests."""

from __future__ import annotations

import pytest

from tests.cli.operator_cli import point_cli_at
from wiremesh.server.config import Settings


@pytest.fixture
def cli_database(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """``wiremesh`` reads this test's database (modules opt in with ``pytestmark``)."""
    point_cli_at(monkeypatch, settings)
