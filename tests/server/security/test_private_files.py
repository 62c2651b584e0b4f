"""The server's data directory, SQLite database and key file are created private (0700 and
0600): the database holds credential hashes and encrypted SMTP passwords."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from wiremesh.server.config import Settings
from wiremesh.server.crypto import configured_keys
from wiremesh.server.db import migrate


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_database_and_key_file_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "wiremesh-data"
    settings = Settings(data_dir=data_dir, secret_keys=[])
    migrate.upgrade(settings)
    configured_keys(settings, create=True)

    assert _mode(data_dir) == 0o700
    database = data_dir / "wiremesh.db"
    assert _mode(database) == 0o600
    assert _mode(data_dir / "secret.key") == 0o600
    for companion in (data_dir / "wiremesh.db-wal", data_dir / "wiremesh.db-shm"):
        if companion.exists():
            assert _mode(companion) == 0o600, companion


def test_a_key_file_alone_creates_a_private_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "keys-only"
    configured_keys(Settings(data_dir=data_dir, secret_keys=[]), create=True)
    assert _mode(data_dir) == 0o700
