"""The one ``wiremesh`` command: the server, the agent and every admin command.

Each command group is imported only when it runs (or when ``--help`` lists them all), so
``wiremesh agent ...`` on a machine that is only a device never loads the server stack
(FastAPI, SQLAlchemy, uvicorn): it starts in half the time and memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:  # the click TyperGroup is typed with (Typer 0.29 carries its own copy)
    from typer._click import Command, Context

__all__ = ["LAZY_COMMANDS", "app", "main"]

LAZY_COMMANDS: Final[dict[str, tuple[str, str | None]]] = {
    # name: (module in wiremesh.cli, its Typer attribute; None: the module's register())
    "server": ("server", None),
    "cleanup": ("connections", None),
    "connections": ("connections", None),
    "ips": ("connections", None),
    "db": ("db", "app"),
    "admin": ("admin", "app"),
    "org": ("orgs", "app"),
    "user": ("users", "app"),
    "member": ("members", "app"),
    "token": ("tokens", "app"),
    "setup-key": ("setup_keys", "app"),
    "device": ("devices", "app"),
    "smtp": ("smtp", "app"),
    "mail": ("mail", "app"),
    "secrets": ("secrets", "app"),
    "agent": ("agent", "app"),
    "relay": ("relays", "app"),
}
"""Every top-level command, in ``--help`` order, and where it is defined."""


def _load(name: str) -> Command:
    """Import the module defining command ``name`` and build its click command."""
    module_name, attribute = LAZY_COMMANDS[name]
    module = importlib.import_module(f"wiremesh.cli.{module_name}")
    root = typer.Typer()
    if attribute is None:
        module.register(root)
    else:
        root.add_typer(getattr(module, attribute), name=name)
    return typer.main.get_group(root).commands[name]


class LazyGroup(TyperGroup):
    """The root group: lists every command by name, imports one only when it is needed."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(LAZY_COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self.commands[cmd_name] = _load(cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] not in LAZY_COMMANDS:  # a typo: suggest among all of them
            for name in LAZY_COMMANDS:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="wiremesh",
    cls=LazyGroup,
    help="Self-hosted, multi-tenant WireGuard mesh VPN: server, agent and administration.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Self-hosted, multi-tenant WireGuard mesh VPN: server, agent and administration."""


def main() -> None:
    app()
