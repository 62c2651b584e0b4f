"""Fixtures for the schema tests: an EMPTY database (no migrations run) on each backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import admin, postgres_url
from wiremesh.server.config import Settings


@pytest.fixture
def empty_settings(backend: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a database of this test alone on which no migration has run yet."""
    if backend == "sqlite":
        yield Settings(data_dir=tmp_path / "data", database_url=None, secret_keys=[])
        return
    name = f"wiremesh_empty_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.fail(f"PostgreSQL is not reachable: {exc}")
    try:
        yield Settings(data_dir=tmp_path / "data", database_url=postgres_url(name), secret_keys=[])
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
