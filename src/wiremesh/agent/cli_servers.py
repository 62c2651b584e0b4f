"""``wiremesh agent servers [set]``: the server URLs this device uses, in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import typer

from wiremesh.agent.cli_common import StateDirOption, fail, load_state
from wiremesh.agent.state import STATE_DIR_ENV, StateError, resolve_state_dir, set_server_urls

__all__ = ["servers_app"]

_SERVERS_HELP: Final = (
    "The server URLs this device uses, in the order the agent tries them (one per replica of "
    "the deployment). Without a subcommand: list them."
)

servers_app = typer.Typer(
    help=_SERVERS_HELP, invoke_without_command=True, pretty_exceptions_enable=False
)


@servers_app.callback()
def servers(
    context: typer.Context,
    state_dir: Path | None = typer.Option(
        None,  # no envvar here: given, it names the directory for `set` too
        "--state-dir",
        help=f"Where the enrollment lives, for `set` too (else ${STATE_DIR_ENV}, else "
        "/var/lib/wiremesh)",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """List the server URLs; see ``_SERVERS_HELP``."""
    if context.invoked_subcommand is not None:
        return
    enrollment, _private_key = load_state(resolve_state_dir(state_dir))
    if as_json:
        typer.echo(json.dumps(list(enrollment.server_urls)))
        return
    for server_url in enrollment.server_urls:
        typer.echo(server_url)


_SERVERS_SET_HELP: Final = (
    "Replace the server list with these URLs, in this order. They are checked (http or https, "
    "none twice) before anything is written, and the state file is replaced atomically. A "
    "running agent uses the new list from its next connection attempt; the current session "
    "stays where it is."
)


@servers_app.command("set", help=_SERVERS_SET_HELP)
def set_servers(
    context: typer.Context,
    urls: list[str] = typer.Argument(..., metavar="URL", help="The servers, in order"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Replace the server list; see ``_SERVERS_SET_HELP``."""
    # `servers --state-dir D set URL` means D as much as `servers set URL --state-dir D`.
    given_before = context.parent.params.get("state_dir") if context.parent else None
    directory = resolve_state_dir(given_before or state_dir)
    try:
        enrollment = set_server_urls(directory, urls)
    except StateError as exc:
        fail(str(exc))
    typer.echo("Servers, in the order the agent tries them:")
    for server_url in enrollment.server_urls:
        typer.echo(f"  {server_url}")
