"""Tools for the schema tests: run migrations, read the schema, and a data set written by hand.

The data set goes in through tables reflected from the database at the revision a test has
migrated to, not through the ORM models: the models follow head, while these tests write rows
at older revisions. A later revision that adds columns therefore does not break them.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from wiremesh.server.config import Settings
from wiremesh.server.db import migrate
from wiremesh.server.db.base import UTCDateTime
from wiremesh.server.mail.models import GLOBAL_SMTP_UNIQUE_INDEX

SEED_REVISION = "add_smtp_and_connection_tracking"

SEED_TABLES = ("smtp_settings", "connection_status")
SEED_INDEXES = (
    "ix_smtp_settings_org_id",
    "ix_connection_status_user_id",
    "ix_connection_status_org_id",
    "ix_connection_status_virtual_ip",
    "ix_connection_status_status",
    "ix_connection_status_last_seen_at",
)
# Tables that exist before the seed's revision, parents first (the order rows go in).
BASE_TABLES = (
    "organization",
    "user",
    "membership",
    "api_token",
    "setup_key",
    "virtual_ip_mapping",
)


def revision_before_seed() -> str:
    """The revision ``alembic downgrade -1`` goes to from the seed's revision."""
    script = ScriptDirectory.from_config(migrate.alembic_config(Settings()))
    down = script.get_revision(SEED_REVISION).down_revision
    assert isinstance(down, str), "the seed's revision must have exactly one parent"
    return down


def head_revision() -> str:
    head = migrate.head_revision(Settings())
    assert head is not None
    return head


async def upgrade(settings: Settings, revision: str) -> None:
    await asyncio.to_thread(migrate.upgrade, settings, revision)


async def downgrade(settings: Settings, revision: str) -> None:
    await asyncio.to_thread(migrate.downgrade, settings, revision)


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[AsyncConnection]:
    """One transaction on a throwaway engine (no pooled connection outlives a migration)."""
    from wiremesh.server.db.session import create_engine

    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            yield connection
    finally:
        await engine.dispose()


# --- Tables as the database has them now ---------------------------------------------------

# What reflection cannot read back from the database, by (table, column): SQLite stores a Uuid
# as CHAR(32), which reflects as a string.
_UNREFLECTABLE_TYPES: dict[tuple[str, str], sa.types.TypeEngine[Any]] = {
    ("connection_status", "connection_id"): sa.Uuid(),
}
# SQLite cannot reflect the expression index; _index_names_sync lists it by name.
_EXPRESSION_INDEX_WARNING = (
    f"Skipped unsupported reflection of expression-based index {GLOBAL_SMTP_UNIQUE_INDEX}"
)


def _retype(inspector: sa.Inspector, table: sa.Table, column: dict[str, Any]) -> None:
    """Give a reflected column the type the migrations meant, where the database forgets it.

    A reflected timestamp is a plain DateTime, which SQLite returns naive: it becomes
    ``UTCDateTime`` again, aware UTC in and out on both backends.
    """
    override = _UNREFLECTABLE_TYPES.get((table.name, column["name"]))
    if override is not None:
        column["type"] = override
    elif isinstance(column["type"], sa.DateTime):
        column["type"] = UTCDateTime()


def _reflect_sync(connection: Connection, name: str) -> sa.Table:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EXPRESSION_INDEX_WARNING)
        return sa.Table(
            name,
            sa.MetaData(),
            autoload_with=connection,
            resolve_fks=False,
            listeners=[("column_reflect", _retype)],
        )


async def reflect(connection: AsyncConnection, name: str) -> sa.Table:
    """The table ``name`` with the columns of the revision the database is at now.

    The tests write rows at older revisions than the ORM models follow, so they read each
    table's columns from the database instead of retyping them.
    """
    return await connection.run_sync(_reflect_sync, name)


Rows = dict[str, list[dict[str, Any]]]

_T0 = datetime(2026, 11, 26, 8, 30, 15, 123456, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return _T0 + timedelta(seconds=seconds)


def dataset() -> Rows:
    """Rows for every table of the seed's revision, with NULLs, both booleans and non-ASCII."""
    return {
        "organization": [
            {"id": 1, "name": "acme", "network_cidr": "100.64.0.0/20", "created_at": _at(0)},
            {
                "id": 2,
                "name": "Công ty Ánh Dương",
                "network_cidr": "100.64.16.0/20",
                "created_at": _at(1.5),
            },
        ],
        "user": [
            {
                "id": 1,
                "email": "alice@example.com",
                "name": "Alice",
                "is_server_admin": True,
                "is_active": True,
                "created_at": _at(2),
            },
            {
                "id": 2,
                "email": "bình@example.vn",
                "name": "Nguyễn Thị Bình",
                "is_server_admin": False,
                "is_active": False,
                "created_at": _at(3.000001),
            },
        ],
        "membership": [
            {"id": 1, "org_id": 1, "user_id": 1, "role": "owner", "created_at": _at(4)},
            {"id": 2, "org_id": 1, "user_id": 2, "role": "member", "created_at": _at(5)},
            {"id": 3, "org_id": 2, "user_id": 2, "role": "admin", "created_at": _at(6)},
        ],
        "api_token": [
            {
                "id": 1,
                "user_id": 1,
                "name": "ci",
                "lookup": "tok0000000000001",
                "secret_hash": "a" * 64,
                "created_at": _at(7),
                "expires_at": _at(86_400 * 30),
                "last_used_at": _at(60),
                "revoked_at": None,
            },
            {
                "id": 2,
                "user_id": 2,
                "name": "laptop",
                "lookup": "tok0000000000002",
                "secret_hash": "b" * 64,
                "created_at": _at(8),
                "expires_at": None,
                "last_used_at": None,
                "revoked_at": _at(9),
            },
        ],
        "setup_key": [
            {
                "id": 1,
                "org_id": 1,
                "user_id": 1,
                "name": "fleet",
                "lookup": "key0000000000001",
                "secret_hash": "c" * 64,
                "reusable": True,
                "usage_limit": 5,
                "used_count": 2,
                "created_at": _at(10),
                "expires_at": _at(3600),
                "revoked_at": None,
            },
            {
                "id": 2,
                "org_id": 2,
                "user_id": 2,
                "name": "một lần",
                "lookup": "key0000000000002",
                "secret_hash": "d" * 64,
                "reusable": False,
                "usage_limit": None,
                "used_count": 0,
                "created_at": _at(11),
                "expires_at": None,
                "revoked_at": None,
            },
        ],
        "virtual_ip_mapping": [
            {
                "id": 1,
                "org_id": 1,
                "user_id": 1,
                "peer_id": "peer-alice",
                "virtual_ip": "100.64.0.1",
                "public_key": "A" * 43 + "=",
                "hostname": "alice-laptop",
                "credential_lookup": "dev0000000000001",
                "credential_hash": "e" * 64,
                "setup_key_id": 1,
                "created_at": _at(12),
                "revoked_at": None,
                "last_seen_at": _at(120),
            },
            {
                "id": 2,
                "org_id": 2,
                "user_id": 2,
                "peer_id": "peer-binh",
                "virtual_ip": "100.64.16.1",
                "public_key": None,
                "hostname": "may-binh",
                "credential_lookup": "dev0000000000002",
                "credential_hash": "f" * 64,
                "setup_key_id": None,
                "created_at": _at(13),
                "revoked_at": _at(14),
                "last_seen_at": None,
            },
        ],
        "smtp_settings": [
            {
                "id": 1,
                "org_id": None,
                "smtp_server": "smtp.gmail.com",
                "smtp_port": 587,
                "smtp_username": "your-email@gmail.com",
                "smtp_password": "password",
                "from_email": "your-email@gmail.com",
                "use_tls": True,
                "is_active": True,
                "created_at": _at(15),
                "updated_at": _at(15),
            },
            {
                "id": 2,
                "org_id": 1,
                "smtp_server": "smtp.company.com",
                "smtp_port": 465,
                "smtp_username": None,
                "smtp_password": None,
                "from_email": "noreply@company.com",
                "use_tls": False,
                "is_active": False,
                "created_at": _at(16),
                "updated_at": _at(17),
            },
        ],
        "connection_status": [
            {
                "id": 1,
                "user_id": 1,
                "org_id": 1,
                "virtual_ip": "100.64.0.1",
                "peer_id": "peer-alice",
                "connection_id": uuid.UUID("0b9e6a52-7c1f-4d8e-9a3b-2f6c1d5e4a01"),
                "public_ip": "203.0.113.7",
                "public_port": 51820,
                "status": "connected",
                "connected_at": _at(100),
                "disconnected_at": None,
                "last_ping_at": _at(115),
                "last_pong_at": _at(115.2),
                "last_seen_at": _at(115.2),
            },
            {
                "id": 2,
                "user_id": 2,
                "org_id": 2,
                "virtual_ip": "100.64.16.1",
                "peer_id": "peer-binh",
                "connection_id": uuid.UUID("0b9e6a52-7c1f-4d8e-9a3b-2f6c1d5e4a02"),
                "public_ip": "2001:db8::1",
                "public_port": None,
                "status": "timeout",
                "connected_at": _at(50),
                "disconnected_at": _at(170),
                "last_ping_at": None,
                "last_pong_at": None,
                "last_seen_at": _at(110),
            },
        ],
    }


async def insert_rows(connection: AsyncConnection, rows: Rows) -> None:
    """Insert ``rows`` table by table, in the order given (parents first)."""
    for name, table_rows in rows.items():
        if table_rows:
            await connection.execute(sa.insert(await reflect(connection, name)), table_rows)


async def read_rows(
    connection: AsyncConnection, name: str, columns: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """The table's rows, decoded (timestamps as aware UTC), ordered by id.

    Every column the table has now, or only ``columns`` (a later revision's additions left out).
    """
    table = await reflect(connection, name)
    selected = table.columns if columns is None else [table.c[column] for column in columns]
    result = await connection.execute(sa.select(*selected).order_by(table.c.id))
    return [dict(row._mapping) for row in result]


def seed_columns(name: str) -> list[str]:
    """The columns the seed's revision gives ``name``: those the data set fills."""
    return list(dataset()[name][0])


async def raw_rows(connection: AsyncConnection, table: str) -> list[dict[str, Any]]:
    """Every column exactly as the driver returns it, ordered by id."""
    result = await connection.execute(sa.text(f'SELECT * FROM "{table}" ORDER BY id'))
    return [dict(row._mapping) for row in result]


def without(rows: Iterable[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in columns} for row in rows]


async def current_revision(connection: AsyncConnection) -> str | None:
    return await connection.run_sync(migrate.current_revision)


def _index_names_sync(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    else:
        sql = (
            "SELECT indexname FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
        )
    return set(connection.exec_driver_sql(sql).scalars())


async def index_names(connection: AsyncConnection) -> set[str]:
    """Every index the migrations created (not alembic_version's), expression indexes included."""
    return await connection.run_sync(_index_names_sync)


async def table_names(connection: AsyncConnection) -> set[str]:
    return set(await connection.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def column_names(connection: AsyncConnection, table: str) -> list[str]:
    columns = await connection.run_sync(lambda c: sa.inspect(c).get_columns(table))
    return [column["name"] for column in columns]


def _fingerprint_sync(connection: Connection) -> dict[str, Any]:
    inspector = sa.inspect(connection)
    tables: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EXPRESSION_INDEX_WARNING)
        for table in sorted(inspector.get_table_names()):
            tables[table] = {
                "columns": sorted(
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in inspector.get_columns(table)
                ),
                "pk": inspector.get_pk_constraint(table),
                "fks": sorted(
                    (
                        fk["name"] or "",
                        tuple(fk["constrained_columns"]),
                        fk["referred_table"],
                        tuple(fk["referred_columns"]),
                        str(sorted(fk.get("options", {}).items())),
                    )
                    for fk in inspector.get_foreign_keys(table)
                ),
                "indexes": sorted(
                    (i["name"] or "", tuple(map(str, i["column_names"])), bool(i["unique"]))
                    for i in inspector.get_indexes(table)
                ),
                "uniques": sorted(
                    (u["name"] or "", tuple(u["column_names"]))
                    for u in inspector.get_unique_constraints(table)
                ),
                "checks": sorted(
                    (c["name"] or "", " ".join(c["sqltext"].split()))
                    for c in inspector.get_check_constraints(table)
                ),
            }
    return {"tables": tables, "index_names": sorted(_index_names_sync(connection))}


async def schema_fingerprint(connection: AsyncConnection) -> dict[str, Any]:
    """The structure of the database (tables, columns, keys, indexes, checks), comparable."""
    return await connection.run_sync(_fingerprint_sync)
