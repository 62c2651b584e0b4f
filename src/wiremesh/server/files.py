"""The server's files on disk are its owner's alone: the data directory, the SQLite
database (which holds credential hashes and encrypted SMTP passwords) and the key file."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_directory(path: Path) -> None:
    """Create ``path`` (mode 0700) if missing; an existing directory is left as the operator
    made it."""
    path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)


def private_file(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 if missing, before a library creates it with
    0644 (SQLite gives its -wal and -shm files the mode of the database file)."""
    private_directory(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
