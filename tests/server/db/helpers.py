"""Tools for the schema tests: run migrations, read the schema, and a data set written by hand.

The data set goes in through hand-written views of the seed's tables (``sqlalchemy.table``),
not through the ORM models: the models follow head, while these tests write rows at older
revisions. A later revision that adds columns therefore does not break them.
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


# --- Hand-written views of the tables as the seed's revision leaves them ------------------


def _ts() -> UTCDateTime:
    return UTCDateTime()


ORGANIZATION = sa.table(
    "organization",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("network_cidr", sa.String),
    sa.column("created_at", _ts()),
)
USER = sa.table(
    "user",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("name", sa.String),
    sa.column("is_server_admin", sa.Boolean),
    sa.column("is_active", sa.Boolean),
    sa.column("created_at", _ts()),
)
MEMBERSHIP = sa.table(
    "membership",
    sa.column("id", sa.Integer),
    sa.column("org_id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("role", sa.String),
    sa.column("created_at", _ts()),
)
API_TOKEN = sa.table(
    "api_token",
    sa.column("id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("lookup", sa.String),
    sa.column("secret_hash", sa.String),
    sa.column("created_at", _ts()),
    sa.column("expires_at", _ts()),
    sa.column("last_used_at", _ts()),
    sa.column("revoked_at", _ts()),
)
SETUP_KEY = sa.table(
    "setup_key",
    sa.column("id", sa.Integer),
    sa.column("org_id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("lookup", sa.String),
    sa.column("secret_hash", sa.String),
    sa.column("reusable", sa.Boolean),
    sa.column("usage_limit", sa.Integer),
    sa.column("used_count", sa.Integer),
    sa.column("created_at", _ts()),
    sa.column("expires_at", _ts()),
    sa.column("revoked_at", _ts()),
)
_VIM_COLUMNS = (
    ("id", sa.Integer),
    ("org_id", sa.Integer),
    ("user_id", sa.Integer),
    ("peer_id", sa.String),
    ("virtual_ip", sa.String),
    ("public_key", sa.String),
    ("hostname", sa.String),
    ("credential_lookup", sa.String),
    ("credential_hash", sa.String),
    ("setup_key_id", sa.Integer),
)
VIRTUAL_IP_MAPPING_BEFORE_SEED = sa.table(
    "virtual_ip_mapping",
    *(sa.column(name, type_) for name, type_ in _VIM_COLUMNS),
    sa.column("created_at", _ts()),
    sa.column("revoked_at", _ts()),
)
VIRTUAL_IP_MAPPING = sa.table(
    "virtual_ip_mapping",
    *(sa.column(name, type_) for name, type_ in _VIM_COLUMNS),
    sa.column("created_at", _ts()),
    sa.column("revoked_at", _ts()),
    sa.column("last_seen_at", _ts()),
)
SMTP_SETTINGS = sa.table(
    "smtp_settings",
    sa.column("id", sa.Integer),
    sa.column("org_id", sa.Integer),
    sa.column("smtp_server", sa.String),
    sa.column("smtp_port", sa.Integer),
    sa.column("smtp_username", sa.String),
    sa.column("smtp_password", sa.String),
    sa.column("from_email", sa.String),
    sa.column("use_tls", sa.Boolean),
    sa.column("is_active", sa.Boolean),
    sa.column("created_at", _ts()),
    sa.column("updated_at", _ts()),
)
CONNECTION_STATUS = sa.table(
    "connection_status",
    sa.column("id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("org_id", sa.Integer),
    sa.column("virtual_ip", sa.String),
    sa.column("peer_id", sa.String),
    sa.column("connection_id", sa.Uuid),
    sa.column("public_ip", sa.String),
    sa.column("public_port", sa.Integer),
    sa.column("status", sa.String),
    sa.column("connected_at", _ts()),
    sa.column("disconnected_at", _ts()),
    sa.column("last_ping_at", _ts()),
    sa.column("last_pong_at", _ts()),
    sa.column("last_seen_at", _ts()),
)

# The schema as the seed's revision leaves it, in insertion order.
SEED_VIEWS: dict[str, sa.TableClause] = {
    "organization": ORGANIZATION,
    "user": USER,
    "membership": MEMBERSHIP,
    "api_token": API_TOKEN,
    "setup_key": SETUP_KEY,
    "virtual_ip_mapping": VIRTUAL_IP_MAPPING,
    "smtp_settings": SMTP_SETTINGS,
    "connection_status": CONNECTION_STATUS,
}
# The same tables one revision earlier.
BEFORE_SEED_VIEWS: dict[str, sa.TableClause] = {
    **{name: SEED_VIEWS[name] for name in BASE_TABLES},
    "virtual_ip_mapping": VIRTUAL_IP_MAPPING_BEFORE_SEED,
}

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


async def insert_rows(
    connection: AsyncConnection, views: dict[str, sa.TableClause], rows: Rows
) -> None:
    for name, view in views.items():
        if rows.get(name):
            await connection.execute(sa.insert(view), rows[name])


async def read_rows(connection: AsyncConnection, view: sa.TableClause) -> list[dict[str, Any]]:
    """The view's columns, decoded (timestamps as aware UTC), ordered by id."""
    result = await connection.execute(sa.select(view).order_by(view.c.id))
    return [dict(row._mapping) for row in result]


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
        # SQLite cannot reflect the expression index; _index_names_sync lists it by name.
        warnings.filterwarnings(
            "ignore",
            message=f"Skipped unsupported reflection of expression-based index "
            f"{GLOBAL_SMTP_UNIQUE_INDEX}",
        )
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
