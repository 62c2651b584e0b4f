"""Shared fixtures: every database test runs on SQLite and on PostgreSQL, each test on a fresh
database built by running the real migrations (once, as a template) — no state is shared."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.postgres import POSTGRES_URL, admin, postgres_url
from wiremesh.server.app import create_app
from wiremesh.server.config import Settings
from wiremesh.server.db import migrate
from wiremesh.server.db.session import create_engine, create_sessionmaker
from wiremesh.server.state import AppState

TEMPLATE_DB = f"wiremesh_template_{os.getpid()}"
BACKENDS = ["sqlite", "postgresql"]

pytest_plugins = ["tests.support.live", "tests.support.deployment"]
"""Fixtures that tests in several folders take (a live server and org; server processes)."""


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated to head; tests clone it. Fails (never skips) without PG."""
    try:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"'))
    except OSError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    asyncio.run(admin(f'CREATE DATABASE "{TEMPLATE_DB}"'))
    migrate.upgrade(Settings(database_url=postgres_url(TEMPLATE_DB)))
    yield TEMPLATE_DB
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("sqlite-template")
    migrate.upgrade(Settings(data_dir=data_dir))
    return data_dir / "wiremesh.db"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str | None]:
    """A fresh, migrated database for this test alone (None = the embedded SQLite default)."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copy(template, tmp_path / "wiremesh.db")
        yield None
        return
    template_name: str = request.getfixturevalue("postgres_template")
    name = f"wiremesh_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    yield postgres_url(name)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(database_url: str | None, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        heartbeat_interval=0.5,
        heartbeat_timeout=2.0,
        heartbeat_flush_interval=0.2,
        secret_keys=[],
        # The tests' SMTP servers listen on loopback; tests of the rule turn it off.
        smtp_allow_private_hosts=True,
    )


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app with its lifespan running (migrations already applied by the fixture)."""
    application = create_app(settings, migrate_on_start=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def app_state(app: FastAPI) -> AppState:
    state: AppState = app.state.wiremesh
    return state


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wiremesh.test") as client:
        yield client
