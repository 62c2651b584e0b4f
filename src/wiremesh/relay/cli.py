"""``wiremesh relay up``: run a relay for a server (see docs/nat-traversal.md)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from pathlib import Path

import typer

from wiremesh.agent.backend import DeviceConfig
from wiremesh.agent.keys import generate_keypair, public_key_of
from wiremesh.agent.tls import UnusableCAFile, tls_context
from wiremesh.protocol import Relay
from wiremesh.relay.interface import DEFAULT_POOL, RelayInterface
from wiremesh.relay.runner import RelayRunner

app = typer.Typer(help="Run a relay: a WireGuard hub for devices that cannot meet directly.")
KEY_FILE = "relay.key"


@app.callback()
def relay() -> None:
    """A group even with one command, so ``python -m wiremesh.relay up`` works like
    ``wiremesh relay up`` (Typer runs a lone command as the program itself otherwise)."""


def _private_key(state_dir: Path) -> str:
    """The relay keeps its key across restarts, so devices keep their peer entries."""
    path = state_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_keypair().private_key
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


@app.command("up")
def up(
    server: str = typer.Option(..., "--server", envvar="WIREMESH_RELAY_SERVER"),
    token: str = typer.Option(..., "--token", envvar="WIREMESH_RELAY_TOKEN", show_default=False),
    name: str = typer.Option(..., "--name", help="a-z, 0-9, '-'; unique per server"),
    endpoint: str = typer.Option(..., "--endpoint", help="public IP:port devices send to"),
    state_dir: Path = typer.Option(Path("/var/lib/wiremesh-relay"), "--state-dir"),
    interface: str = typer.Option("wmr0", "--interface"),
    listen_port: int = typer.Option(3478, "--listen-port", min=1, max=65535),
    pool: str = typer.Option(DEFAULT_POOL, "--pool", help="the overlay range of every org"),
    log_level: str = typer.Option("info", "--log-level"),
    ca_file: Path | None = typer.Option(
        None,
        "--ca-file",
        envvar="WIREMESH_RELAY_CA_FILE",
        dir_okay=False,
        help="A private CA's certificate (PEM) to verify the server with, instead of the system's",
    ),
) -> None:
    """Run the relay until SIGTERM/SIGINT."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        tls = tls_context(ca_file)
    except UnusableCAFile as exc:
        raise typer.BadParameter(str(exc)) from None
    private_key = _private_key(state_dir)
    try:
        identity = Relay(name=name, public_key=public_key_of(private_key), endpoint=endpoint)
        network = ipaddress.ip_interface(pool)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    relay_if = RelayInterface(interface)
    runner = RelayRunner(server, token, identity, relay_if, tls=tls)
    asyncio.run(_run(relay_if, runner, DeviceConfig(network, private_key, listen_port)))


async def _run(relay_if: RelayInterface, runner: RelayRunner, device: DeviceConfig) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.stop)
    await relay_if.setup(device)
    await relay_if.set_org_networks(())  # forward nothing until the server lists the orgs
    logging.getLogger("wiremesh.relay").info(
        "relay %s up on port %d", runner.identity.name, device.listen_port
    )
    try:
        await runner.run()
    finally:
        await relay_if.teardown()
        await relay_if.remove_rules()
