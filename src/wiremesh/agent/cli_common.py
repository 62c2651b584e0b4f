"""What the agent's commands share: the state dir and CA file options, failing with a
message, and loading the enrollment with the private key.

A module of its own so each group of commands (:mod:`.cli`, :mod:`.cli_servers`) can use
them without importing the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import typer

from wiremesh.agent.state import (
    KEY_FILE,
    STATE_DIR_ENV,
    Enrollment,
    StateError,
    load_enrollment,
    load_private_key,
)
from wiremesh.agent.tls import CA_FILE_ENV, UnusableCAFile, tls_context

if TYPE_CHECKING:
    import ssl

__all__ = ["EXIT_ERROR", "CAFileOption", "StateDirOption", "fail", "load_state", "server_tls"]

EXIT_ERROR: Final = 1

StateDirOption = typer.Option(
    None,
    "--state-dir",
    envvar=STATE_DIR_ENV,
    help="Where the enrollment and private key live [default: /var/lib/wiremesh]",
)


CAFileOption = typer.Option(
    None,
    "--ca-file",
    envvar=CA_FILE_ENV,
    dir_okay=False,
    help="A private CA's certificate (PEM) to verify the server with, instead of the system's CAs",
)


def server_tls(ca_file: Path | None) -> ssl.SSLContext | None:
    """The private CA's context, or a clear error for an unusable CA file; None without one
    (the system's CAs, loaded only by whatever connects over TLS)."""
    if ca_file is None:
        return None
    try:
        return tls_context(ca_file)
    except UnusableCAFile as exc:
        fail(str(exc))


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def load_state(directory: Path) -> tuple[Enrollment, str]:
    """The enrollment and private key, or exit saying what is wrong with them."""
    try:
        enrollment = load_enrollment(directory)
    except StateError as exc:
        fail(str(exc))
    try:
        return enrollment, load_private_key(directory, enrollment)
    except StateError as exc:
        fail(
            f"{exc} (if `wiremesh agent rotate-key` was interrupted, running it again "
            f"repairs {directory / KEY_FILE})"
        )
