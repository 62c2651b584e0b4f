"""`wiremesh db` against a database that is not there: one clear line, exit 1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.operator_cli import invoke


def test_unreachable_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("WIREMESH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("WIREMESH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WIREMESH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/none")
    for args in (("db", "current"), ("db", "upgrade")):
        result = invoke(*args)
        assert result.exit_code == 1
        assert "unreachable" in result.stderr
        assert "Traceback" not in result.output
