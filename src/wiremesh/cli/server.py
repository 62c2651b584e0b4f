"""`wiremesh` CLI: server commands."""

import typer

app = typer.Typer(no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Top-level commands of this module."""
