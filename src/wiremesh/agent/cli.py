"""The agent's commands: ``wiremesh agent ...``, or ``python -m wiremesh.agent ...`` alone.

Only :mod:`wiremesh.agent` and libraries are imported here, never the server, so the agent
starts quickly and runs where only the agent's dependencies are installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Final, NoReturn

import typer

from wiremesh.agent.backend import (
    DEFAULT_LISTEN_PORT,
    BackendName,
    BackendUnavailable,
    create_backend,
)
from wiremesh.agent.enroll import EnrollError
from wiremesh.agent.enroll import enroll as enroll_device
from wiremesh.agent.runner import AgentRunner, BackendError, Backoff, Refused
from wiremesh.agent.state import (
    STATE_DIR_ENV,
    Enrollment,
    StateError,
    load_enrollment,
    load_private_key,
    resolve_state_dir,
    state_summary,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Run this machine as a device of a wiremesh network.",
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks with locals could show the credential
)

EXIT_ERROR: Final = 1
EXIT_REFUSED: Final = 3
"""The server refused this device for good: restarting the agent cannot help."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error")

StateDirOption = typer.Option(
    None,
    "--state-dir",
    envvar=STATE_DIR_ENV,
    help="Where the enrollment and private key live [default: /var/lib/wiremesh]",
)


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _configure_logging(level: str) -> None:
    if level.lower() not in LOG_LEVELS:
        _fail(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
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
    "directory, readable by the owner only."
)


@app.command("enroll", help=_ENROLL_HELP)
def enroll(
    server: str = typer.Option(
        ..., "--server", help="The server's URL, e.g. https://wiremesh.example.com"
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
    try:
        enrollment = asyncio.run(enroll_device(directory, server, setup_key, name, force=force))
    except EnrollError as exc:
        _fail(str(exc))
    typer.echo(
        f"Enrolled {enrollment.device.hostname} in {enrollment.network.org_name}: "
        f"virtual IP {enrollment.device.virtual_ip} ({enrollment.network.network}), "
        f"peer {enrollment.device.peer_id}."
    )
    typer.echo(f"State stored in {directory}. Start the agent with `wiremesh agent up`.")


def _load(directory: Path) -> tuple[Enrollment, str]:
    try:
        enrollment = load_enrollment(directory)
        return enrollment, load_private_key(directory, enrollment)
    except StateError as exc:
        _fail(str(exc))


_UP_HELP: Final = (
    "Connect to the server and keep WireGuard's peers in line with the network. "
    "It reconnects on its own, with jittered exponential backoff.\n\n"
    "Exit status: 0 after SIGTERM/SIGINT (the session is closed cleanly); 3 when the server "
    "refused this device for good (revoked, unknown credential, unsupported version), so "
    "restarting cannot help; 1 on any other error."
)


@app.command("up", help=_UP_HELP)
def up(
    state_dir: Path | None = StateDirOption,
    backend: BackendName = typer.Option(
        BackendName.MEMORY,
        "--backend",
        case_sensitive=False,
        help="How WireGuard is configured; only `memory` (no real interface) exists so far",
    ),
    listen_port: int = typer.Option(
        DEFAULT_LISTEN_PORT,
        "--listen-port",
        min=0,
        max=65535,
        envvar="WIREMESH_AGENT_LISTEN_PORT",
        help="WireGuard's UDP port (0: any free port)",
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
        wireguard = create_backend(backend)
    except (BackendUnavailable, ValueError) as exc:
        _fail(str(exc))
    enrollment, private_key = _load(resolve_state_dir(state_dir))
    runner = AgentRunner(
        enrollment, private_key, wireguard, listen_port=listen_port, backoff=backoff
    )
    try:
        refused = asyncio.run(_run(runner))
    except BackendError as exc:
        _fail(str(exc))
    if refused is not None:
        _fail(refused.message, EXIT_REFUSED)


async def _run(runner: AgentRunner) -> Refused | None:
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
    try:
        return await runner.run()
    except asyncio.CancelledError:
        return None
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


@app.command("status")
def status(
    state_dir: Path | None = StateDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Show this machine's enrollment (never the credential or the private key)."""
    directory = resolve_state_dir(state_dir)
    enrollment, _private_key = _load(directory)
    summary = state_summary(enrollment)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"server:     {enrollment.server_url}")
    typer.echo(f"network:    {enrollment.network.org_name} ({enrollment.network.network})")
    typer.echo(f"device:     {enrollment.device.hostname} ({enrollment.device.peer_id})")
    typer.echo(f"virtual IP: {enrollment.device.virtual_ip}")
    typer.echo(f"public key: {enrollment.device.public_key}")
    typer.echo(f"state dir:  {directory}")
