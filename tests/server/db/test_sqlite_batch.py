"""SQLite batch migrations (copy, DROP, rename) must not cascade deletes into child tables.

These run a later revision, written here, through a copy of the real Alembic environment:
one rebuilds ``organization`` (the parent of almost everything), one leaves an orphan row.
"""

from __future__ import annotations

import asyncio
import shutil
from importlib.resources import files
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from tests.server.db.helpers import (
    connect,
    current_revision,
    dataset,
    head_revision,
    insert_rows,
    read_rows,
    seed_columns,
)
from wiremesh.server.config import Settings
from wiremesh.server.db.migrate import alembic_config

REVISION = '''\
"""A later revision, for the test.

Revision ID: zz_test_revision
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "zz_test_revision"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''

REBUILD_ORGANIZATION = """\
    with op.batch_alter_table("organization", recreate="always") as batch_op:
        batch_op.alter_column("name", existing_type=sa.String(64), type_=sa.String(80))"""

LEAVE_AN_ORPHAN = """\
    op.execute("INSERT INTO membership (org_id, user_id, role) VALUES (999, 1, 'member')")"""

SQLITE_ONLY = pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skip(reason="PostgreSQL alters tables in place, no batch rebuild"),
        ),
    ],
    indirect=True,
)


def _config_with_revision(settings: Settings, tmp_path: Path, body: str) -> Config:
    scripts = tmp_path / "alembic"
    shutil.copytree(
        Path(str(files("wiremesh") / "alembic")),
        scripts,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    source = REVISION.format(down=head_revision(), body=body)
    (scripts / "versions" / "zz_test_revision.py").write_text(source)
    config = alembic_config(settings)
    config.set_main_option("script_location", str(scripts))
    return config


@SQLITE_ONLY
async def test_rebuilding_a_parent_table_keeps_every_child_row(
    empty_settings: Settings, tmp_path: Path
) -> None:
    settings = empty_settings
    config = _config_with_revision(settings, tmp_path, REBUILD_ORGANIZATION)
    await asyncio.to_thread(command.upgrade, config, head_revision())
    data = dataset()
    async with connect(settings) as conn:
        await insert_rows(conn, data)

    await asyncio.to_thread(command.upgrade, config, "zz_test_revision")

    async with connect(settings) as conn:
        assert await current_revision(conn) == "zz_test_revision"
        for name, rows in data.items():
            assert await read_rows(conn, name, seed_columns(name)) == rows, name


@SQLITE_ONLY
async def test_a_migration_that_breaks_a_foreign_key_is_rolled_back(
    empty_settings: Settings, tmp_path: Path
) -> None:
    settings = empty_settings
    config = _config_with_revision(settings, tmp_path, LEAVE_AN_ORPHAN)
    await asyncio.to_thread(command.upgrade, config, head_revision())
    data = dataset()
    async with connect(settings) as conn:
        await insert_rows(conn, data)

    with pytest.raises(RuntimeError, match="foreign key"):
        await asyncio.to_thread(command.upgrade, config, "zz_test_revision")

    async with connect(settings) as conn:
        assert await current_revision(conn) == head_revision()
        assert await read_rows(conn, "membership", seed_columns("membership")) == data["membership"]
