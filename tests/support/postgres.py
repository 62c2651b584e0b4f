"""The test PostgreSQL server (``WIREMESH_TEST_POSTGRES_URL``): URLs of its databases and
statements run as its administrator (CREATE/DROP DATABASE)."""

from __future__ import annotations

import os

import asyncpg
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "WIREMESH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def asyncpg_dsn(database: str) -> str:
    """``database`` on the test server, as a DSN for asyncpg itself."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def postgres_url(database: str) -> str:
    """``database`` on the test server, as a SQLAlchemy URL for the app."""
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


async def admin(sql: str) -> None:
    """Run ``sql`` on the server's maintenance database."""
    connection = await asyncpg.connect(asyncpg_dsn(make_url(POSTGRES_URL).database or "postgres"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()
