"""The agent's commands: ``wiremesh agent ...``, or ``python -m wiremesh.agent ...`` alone.

Only :mod:`wiremesh.agent` and libraries are imported here, never the server, so the agent
starts quickly and runs where only the agent's dependencies are installed. The HTTP client
(httpx, and through it rich and pygments) is imported only by the commands that talk HTTP,
``enroll`` and ``rotate-key``: the long-running ``up`` is a third smaller without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Final

import typer

from wiremesh.agent.backend import (
    DEFAULT_INTERFACE,
    DEFAULT_KEEPALIVE,
    DEFAULT_MTU,
    KEEPALIVE_RANGE,
    MTU_RANGE,
    BackendName,
    BackendUnavailable,
)
from wiremesh.agent.cli_common import StateDirOption, fail, load_state
from wiremesh.agent.cli_servers import servers_app
from wiremesh.agent.factory import create_backend
from wiremesh.agent.runner import AgentRunner, BackendError, Backoff, Refused
from wiremesh.agent.state import (
    DEFAULT_STATE_DIR,
    StateError,
    ensure_listen_port,
    resolve_state_dir,
    state_summary,
)
from wiremesh.agent.status import read_status, render_status
from wiremesh.agent.wireguard.keywatch import KeyFollower
from wiremesh.agent.wireguard.prereq import missing_prerequisites, prerequisites_message

app = typer.Typer(
    no_args_is_help=True,
    help="Run this machine as a device of a wiremesh network.",
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks with locals could show the credential
)

EXIT_REFUSED: Final = 3
"""The server refused this device for good: restarting the agent cannot help."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def _configure_logging(level: str) -> None:
    if level.lower() not in LOG_LEVELS:
        fail(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    # Their debug output quotes requests and frames, the auth frame's credential included.
    for noisy in ("httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))


_ENROLL_HELP: Final = (
    "Register this machine with a setup key. Its WireGuard key pair is made here and only the "
    "public key leaves the machine; the credential and the private key are stored in the state "
    "directory, readable by the owner only.\n\n"
    "Give --server once per server replica: they are asked in order until one answers (an "
    "unreachable or failing one is skipped; a refusal, such as an invalid setup key, is final) "
    "and all of them are stored for `wiremesh agent up`, which moves to the next when one is "
    "away. `wiremesh agent servers set` changes the list later."
)


@app.command("enroll", help=_ENROLL_HELP)
def enroll(
    servers: list[str] = typer.Option(
        ...,
        "--server",
        help="A server's URL, e.g. https://wiremesh.example.com; repeat it for each replica",
    ),
    setup_key: str = typer.Option(
        ...,
        "--setup-key",
        envvar="WIREMESH_SETUP_KEY",
        help="A setup key from an organization admin (or $WIREMESH_SETUP_KEY, kept out of ps)",
    ),
    state_dir: Path | None = StateDirOption,
    hostname: str | None = typer.Option(
        None, "--hostname", help="This device's name in the network [default: the host name]"
    ),
    force: bool = typer.Option(
        False, "--force", help="Enroll again although this machine is enrolled already"
    ),
) -> None:
    """Enroll this machine; see ``_ENROLL_HELP``."""
    _configure_logging("warning")
    directory = resolve_state_dir(state_dir)
    name = hostname or socket.gethostname()
    from wiremesh.agent.enroll import EnrollError  # httpx: loaded here, not by `up`
    from wiremesh.agent.enroll import enroll as enroll_device

    try:
        enrollment = asyncio.run(enroll_device(directory, servers, setup_key, name, force=force))
    except EnrollError as exc:
        fail(str(exc))
    typer.echo(
        f"Enrolled {enrollment.device.hostname} in {enrollment.network.org_name}: "
        f"virtual IP {enrollment.device.virtual_ip} ({enrollment.network.network}), "
        f"peer {enrollment.device.peer_id}."
    )
    start = "wiremesh agent up"
    if directory != DEFAULT_STATE_DIR:  # the hint must find the same state
        start += f" --state-dir {shlex.quote(str(directory))}"
    typer.echo(f"State stored in {directory}. Start the agent with `{start}`.")


_UP_HELP: Final = (
    "Connect to the server and keep WireGuard's peers in line with the network. "
    "It reconnects on its own, with jittered exponential backoff.\n\n"
    "Backends: `kernel` (the Linux WireGuard module), `wireguard-go` (userspace, run as a "
    "child of the agent), `auto` (the kernel when it has WireGuard, else wireguard-go) and "
    "`memory` (no interface: for tests). The real ones need root, `wg` and `ip`; what is "
    "missing is listed before anything starts. The interface is removed when the agent stops; "
    "peers that are offline stay configured, revoked or deleted devices are removed.\n\n"
    "With several server URLs it tries the next at once when a connection fails or a session "
    "ends (a replica stopping, a lost connection), and backs off only after every URL failed "
    "in a row. It reads the list again before each connection attempt, so `wiremesh agent "
    "servers set` needs no restart.\n\n"
    "The agent follows its private key file: after `wiremesh agent rotate-key` it re-keys the "
    "interface within a tenth of a second, without a restart, and starts a handshake with "
    "every peer. When the machine's address changes, it reconnects at once and tells its "
    "peers by a packet from the new address.\n\n"
    "Exit status: 0 after SIGTERM/SIGINT (the session is closed cleanly); 3 when the server "
    "refused this device for good (revoked, unknown credential, unsupported version), so "
    "restarting cannot help; 1 on any other error."
)


@app.command("up", help=_UP_HELP)
def up(
    state_dir: Path | None = StateDirOption,
    backend: BackendName = typer.Option(
        BackendName.AUTO,
        "--backend",
        case_sensitive=False,
        envvar="WIREMESH_AGENT_BACKEND",
        help="How WireGuard is run: kernel, wireguard-go, auto or memory (no real interface)",
    ),
    interface: str = typer.Option(
        DEFAULT_INTERFACE,
        "--interface",
        envvar="WIREMESH_AGENT_INTERFACE",
        help="The WireGuard interface the agent creates (and removes on exit)",
    ),
    listen_port: int | None = typer.Option(
        None,
        "--listen-port",
        min=0,
        max=65535,
        envvar="WIREMESH_AGENT_LISTEN_PORT",
        help="WireGuard's UDP port (0: any free port each start); else the device's own, "
        "drawn once and kept in the state dir",
        show_default=False,
    ),
    mtu: int = typer.Option(
        DEFAULT_MTU,
        "--mtu",
        min=MTU_RANGE[0],
        max=MTU_RANGE[1],
        envvar="WIREMESH_AGENT_MTU",
        help="The interface's MTU (1280 at least, so IPv6 fits; lower it when the path to "
        "the peers carries less than 1500 bytes, e.g. PPPoE or another tunnel)",
    ),
    keepalive: int = typer.Option(
        DEFAULT_KEEPALIVE,
        "--keepalive",
        min=KEEPALIVE_RANGE[0],
        max=KEEPALIVE_RANGE[1],
        envvar="WIREMESH_AGENT_KEEPALIVE",
        help="Seconds between keepalives to each peer, which keep NAT mappings open and let "
        "a peer that lost its session be noticed; 0 turns them off (only for peers that "
        "need no NAT traversal)",
    ),
    log_level: str = typer.Option(
        "info", "--log-level", envvar="WIREMESH_AGENT_LOG_LEVEL", help="debug, info, ..."
    ),
    backoff_base: float = typer.Option(
        0.5, "--backoff-base", envvar="WIREMESH_AGENT_BACKOFF_BASE", hidden=True, min=0.001
    ),
    backoff_cap: float = typer.Option(
        30.0, "--backoff-cap", envvar="WIREMESH_AGENT_BACKOFF_CAP", hidden=True, min=0.001
    ),
    backoff_reset: float = typer.Option(
        60.0, "--backoff-reset", envvar="WIREMESH_AGENT_BACKOFF_RESET", hidden=True, min=0
    ),
) -> None:
    """Run the agent until stopped; see ``_UP_HELP``."""
    _configure_logging(log_level)
    try:
        backoff = Backoff(
            base=backoff_base, cap=max(backoff_cap, backoff_base), reset_after=backoff_reset
        )
    except ValueError as exc:
        fail(str(exc))
    directory = resolve_state_dir(state_dir)
    enrollment, private_key = load_state(directory)
    if listen_port is None:
        try:
            listen_port = ensure_listen_port(directory)
        except StateError as exc:
            fail(str(exc))
    missing = missing_prerequisites(backend)
    if missing:
        fail(prerequisites_message(backend, missing))
    try:
        wireguard = create_backend(backend, interface=interface, mtu=mtu, keepalive=keepalive)
    except (BackendUnavailable, ValueError) as exc:
        fail(str(exc))
    follower = KeyFollower(wireguard, directory, private_key)
    runner = AgentRunner(
        enrollment,
        private_key,
        follower,
        listen_port=listen_port,
        backoff=backoff,
        state_dir=directory,
        keepalive=keepalive,
    )
    follower.on_rotated = runner.rotated
    try:
        refused = asyncio.run(_run(runner, follower))
    except BackendError as exc:
        fail(str(exc))
    if refused is not None:
        fail(refused.message, EXIT_REFUSED)


async def _run(runner: AgentRunner, follower: KeyFollower | None = None) -> Refused | None:
    """Run until stopped; the first SIGTERM/SIGINT stops cleanly, a second one at once."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def on_signal(signum: int) -> None:
        if runner.stopping:
            logging.getLogger("wiremesh.agent").warning("second signal: stopping at once")
            main.cancel()
            return
        logging.getLogger("wiremesh.agent").info(
            "%s received: closing the session", signal.Signals(signum).name
        )
        runner.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    watching = asyncio.create_task(follower.watch()) if follower is not None else None
    if watching is not None:
        watching.add_done_callback(_watch_ended)
    try:
        return await runner.run()
    except asyncio.CancelledError:
        return None
    finally:
        if watching is not None:
            watching.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _watch_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("wiremesh.agent").error(
            "stopped following the private key file: %s", task.exception()
        )


_ROTATE_HELP: Final = (
    "Give this device a new WireGuard key pair. The private key is made here; the public key "
    "goes to the server (with the device credential), which passes it to every peer; then the "
    "new private key is stored (mode 0600). A running agent picks it up at once, no "
    "restart needed. If interrupted, run it again."
)


@app.command("rotate-key", help=_ROTATE_HELP)
def rotate(state_dir: Path | None = StateDirOption) -> None:
    """Rotate the key pair; see ``_ROTATE_HELP``."""
    _configure_logging("warning")
    directory = resolve_state_dir(state_dir)
    from wiremesh.agent.wireguard.rotate import RotateError, rotate_key  # httpx: see `enroll`

    try:
        enrollment = asyncio.run(rotate_key(directory))
    except RotateError as exc:
        fail(str(exc))
    typer.echo(f"New public key: {enrollment.device.public_key}")
    typer.echo("The server has told the peers. A running agent switches to the new key at once.")


@app.command("status")
def status(
    state_dir: Path | None = StateDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Show this machine's enrollment (never the credential or the private key) and what
    the agent reports: connected or not, the server, and each peer's path."""
    directory = resolve_state_dir(state_dir)
    enrollment, _private_key = load_state(directory)
    summary = state_summary(enrollment)
    live = read_status(directory)
    if as_json:
        typer.echo(json.dumps({**summary, "agent": live}, indent=2))
        return
    for number, server_url in enumerate(enrollment.server_urls):
        typer.echo(f"{'servers:' if number == 0 else '':<12}{server_url}")
    typer.echo(f"network:    {enrollment.network.org_name} ({enrollment.network.network})")
    typer.echo(f"device:     {enrollment.device.hostname} ({enrollment.device.peer_id})")
    typer.echo(f"virtual IP: {enrollment.device.virtual_ip}")
    typer.echo(f"public key: {enrollment.device.public_key}")
    port = enrollment.listen_port
    typer.echo(f"UDP port:   {port if port is not None else 'drawn at the first start'}")
    typer.echo(f"state dir:  {directory}")
    for line in render_status(live):
        typer.echo(line)


app.add_typer(servers_app, name="servers")
