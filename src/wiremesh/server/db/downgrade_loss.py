"""What a schema downgrade would destroy: the tables and columns it drops that hold data.

Which tables and columns a downgrade drops is learnt by running the same downgrade on a
scratch SQLite database brought to the same revision, and comparing its schema before and
after: no migration has to declare anything, and a new one is covered as it is written.
Then the real database is asked how many rows (tables) or values (columns) would go.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, column, func, inspect, select, table
from sqlalchemy import create_engine as create_sync_engine

from wiremesh.server.config import Settings
from wiremesh.server.db import migrate

ALEMBIC_TABLE = "alembic_version"


@dataclass(frozen=True, slots=True)
class Dropped:
    """A table (``column`` None) or one column of it that the downgrade removes."""

    table: str
    column: str | None = None

    def __str__(self) -> str:
        return self.table if self.column is None else f"{self.table}.{self.column}"


@dataclass(frozen=True, slots=True)
class Loss:
    dropped: Dropped
    count: int

    def __str__(self) -> str:
        if self.dropped.column is None:
            return f"table {self.dropped}: {self.count} row{'s' if self.count != 1 else ''}"
        return f"column {self.dropped}: {self.count} value{'s' if self.count != 1 else ''}"


def _schema(url: str) -> dict[str, set[str]]:
    engine = create_sync_engine(url)
    try:
        inspector = inspect(engine)
        return {
            name: {col["name"] for col in inspector.get_columns(name)}
            for name in inspector.get_table_names()
            if name != ALEMBIC_TABLE
        }
    finally:
        engine.dispose()


def dropped_by_downgrade(current: str, revision: str) -> list[Dropped]:
    """The tables and columns that ``db downgrade --revision revision`` from ``current`` drops."""
    with tempfile.TemporaryDirectory(prefix="wiremesh-downgrade-") as scratch:
        path = Path(scratch) / "scratch.db"
        settings = Settings(
            data_dir=Path(scratch), database_url=f"sqlite+aiosqlite:///{path}", secret_keys=[]
        )
        migrate.upgrade(settings, current)
        before = _schema(f"sqlite:///{path}")
        migrate.downgrade(settings, revision)
        after = _schema(f"sqlite:///{path}")
    dropped: list[Dropped] = []
    for name, columns in sorted(before.items()):
        if name not in after:
            dropped.append(Dropped(name))
        else:
            dropped.extend(Dropped(name, gone) for gone in sorted(columns - after[name]))
    return dropped


def losses(connection: Connection, dropped: list[Dropped]) -> list[Loss]:
    """How much data each dropped table or column holds in the real database; empty ones
    are left out."""
    found: list[Loss] = []
    existing = set(inspect(connection).get_table_names())
    for item in dropped:
        if item.table not in existing:
            continue
        target = table(item.table)
        statement = select(func.count()).select_from(target)
        if item.column is not None:
            statement = statement.where(column(item.column).is_not(None))
        count = int(connection.execute(statement).scalar_one())
        if count:
            found.append(Loss(item, count))
    return found
