"""The one ``wiremesh`` command: the server, the agent and every admin command."""

from __future__ import annotations

import typer

from wiremesh.cli import (
    admin,
    agent,
    connections,
    db,
    devices,
    mail,
    members,
    orgs,
    relays,
    secrets,
    server,
    setup_keys,
    smtp,
    tokens,
    users,
)

app = typer.Typer(
    name="wiremesh",
    help="Self-hosted, multi-tenant WireGuard mesh VPN: server, agent and administration.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

server.register(app)
connections.register(app)
app.add_typer(db.app, name="db")
app.add_typer(admin.app, name="admin")
app.add_typer(orgs.app, name="org")
app.add_typer(users.app, name="user")
app.add_typer(members.app, name="member")
app.add_typer(tokens.app, name="token")
app.add_typer(setup_keys.app, name="setup-key")
app.add_typer(devices.app, name="device")
app.add_typer(smtp.app, name="smtp")
app.add_typer(mail.app, name="mail")
app.add_typer(secrets.app, name="secrets")
app.add_typer(agent.app, name="agent")
app.add_typer(relays.app, name="relay")


def main() -> None:
    app()
