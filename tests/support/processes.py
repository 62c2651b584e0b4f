"""Real wiremesh processes for end-to-end tests: servers, agents and HAProxy as subprocesses.

Each process runs in its own process group with its output in a log file; the
``processes`` fixture kills every group at teardown, whatever the test did, and prints
the logs (pytest shows them when a test fails). Several servers on one PostgreSQL database
are replicas of one deployment; :class:`HAProxy` balances agents over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import httpx

from tests.support.ports import free_port
from tests.support.waiting import eventually

WIREMESH = [sys.executable, "-m", "wiremesh"]
AGENT_ONLY = [sys.executable, "-m", "wiremesh.agent"]
"""The same agent commands without loading the server: a faster start."""

HEARTBEAT_TIMEOUT = 2.0
REPLICA_LEASE_TTL = 1.5
"""On PostgreSQL a killed server's rows are ended once its replica lease runs out."""
SERVER_ENV = {
    "WIREMESH_HEARTBEAT_INTERVAL": "0.5",
    "WIREMESH_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
    "WIREMESH_HEARTBEAT_FLUSH_INTERVAL": "0.2",
    "WIREMESH_REPLICA_LEASE_TTL": str(REPLICA_LEASE_TTL),
}

READINESS_PATH: Final = "/readyz"
"""What says a replica may take agents: its database answers and its presence hub runs
(``/healthz`` only says the process serves)."""

CLUSTER_ENV = {
    # Each replica may open twice this (pool plus overflow): 3 replicas stay at 30 of
    # PostgreSQL's default 100, leaving room for the tests, the CLI and other test runs.
    "WIREMESH_DATABASE_POOL_SIZE": "5",
    # HAProxy connects from 127.0.0.1; only its X-Forwarded-For is believed.
    "WIREMESH_TRUSTED_PROXIES": '["127.0.0.1/32"]',
}
"""What every replica of a cluster adds to ``SERVER_ENV``."""

CONNECT_SECONDS = 20.0
"""How long agents may take to connect: Python start-up of an agent on a busy machine included."""

AGENT_ENV = {
    "WIREMESH_AGENT_BACKOFF_BASE": "0.1",
    "WIREMESH_AGENT_BACKOFF_CAP": "0.5",
}


def clean_environ() -> dict[str, str]:
    """This environment without any WIREMESH_* variable, so tests are hermetic."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIREMESH_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """One subprocess in its own process group, its stdout and stderr in ``log_path``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def send(self, signum: signal.Signals) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group (a stopped process dies too) and reap it."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    async def exit_code(self, seconds: float) -> int:
        """Wait for the process to exit on its own; its exit status."""
        assert self.popen is not None
        deadline = time.monotonic() + seconds
        while (code := self.popen.poll()) is None:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name} did not exit within {seconds} s")
            await asyncio.sleep(0.05)
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


class ProcessGroup:
    """Every process a test started; ``cleanup`` kills them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[Process] = []

    def add(self, name: str, argv: list[str], env: Mapping[str, str]) -> Process:
        process = Process(name, argv, env, self.directory / f"{name}.log")
        self.processes.append(process)
        return process

    def cleanup(self) -> None:
        for process in self.processes:
            process.kill()

    def dump_logs(self) -> str:
        return "\n".join(
            f"===== {process.name} ({process.log_path}) =====\n{process.log()}"
            for process in self.processes
        )


class ServerProcess:
    """``wiremesh server`` on a fixed port, restartable on the same port and database.

    ``kill`` (SIGKILL), ``stop`` (SIGTERM), ``pause``/``resume`` (SIGSTOP/SIGCONT) act on the
    current process; ``start`` again is a restart on the same port with the same settings.
    ``name`` tells the logs of replicas on one database apart; ``host`` is where it listens
    (another address than loopback when machines in network namespaces must reach it).
    """

    def __init__(
        self,
        group: ProcessGroup,
        env: Mapping[str, str],
        port: int,
        *,
        name: str = "server",
        host: str = "127.0.0.1",
        ca_file: Path | None = None,
    ) -> None:
        self.group = group
        self.name = name
        self.env = {**env, "WIREMESH_HOST": host, "WIREMESH_PORT": str(port)}
        self.host = host
        self.port = port
        tls = "WIREMESH_TLS_CERT" in self.env
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        self.ws_url = f"{'wss' if tls else 'ws'}://{host}:{port}/api/v1/agent/ws"
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        )
        """What the test's clients verify the server's certificate with (TLS servers)."""
        self.current: Process | None = None
        self.starts = 0

    async def start(self, seconds: float = 30.0) -> None:
        """Start a process and wait until it is ready to take agents (``READINESS_PATH``)."""
        self.starts += 1
        process = self.group.add(f"{self.name}-{self.starts}", [*WIREMESH, "server"], self.env)
        process.start()
        self.current = process

        async def ready() -> bool:
            if not process.running():
                raise AssertionError(f"{self.name} exited early:\n{process.log()}")
            try:
                async with httpx.AsyncClient(timeout=1.0, verify=self.verify) as client:
                    response = await client.get(f"{self.url}{READINESS_PATH}")
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await eventually(ready, seconds, f"{self.name} answers {READINESS_PATH}", interval=0.1)

    @property
    def process(self) -> Process:
        assert self.current is not None, f"{self.name} was never started"
        return self.current

    def running(self) -> bool:
        return self.current is not None and self.current.running()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, its rows stay ``connected`` until someone ends them."""
        self.process.kill()

    async def stop(self, seconds: float = 20.0) -> None:
        """SIGTERM, as an orchestrator stops a replica; fails unless it shuts down cleanly
        (uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is clean)."""
        self.process.send(signal.SIGTERM)
        code = await self.process.exit_code(seconds)
        assert code in (0, -signal.SIGTERM), f"{self.name} exited {code}:\n{self.process.log()}"

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing (a VM freeze, a long GC)."""
        self.process.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send(signal.SIGCONT)


HAPROXY_CHECK_INTERVAL_MS: Final = 200
HAPROXY_FALL: Final = 2
HAPROXY_RISE: Final = 2
"""A replica is out of rotation after two failed checks 200 ms apart, back after two good."""

HAPROXY_CONFIG = """\
# Generated by tests/support/processes.py; docs/high-availability.md explains each line.
global
    log stdout format raw local0 info
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    # Replicas believe the client address HAProxy adds (WIREMESH_TRUSTED_PROXIES).
    option forwardfor
    # A connect to a replica that just died is retried on another one.
    retries 3
    option redispatch 1
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    # An agent's WebSocket lives for days; the application's heartbeat detects dead ones.
    timeout tunnel 1h
    timeout client-fin 5s

frontend wiremesh
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    # Agent sessions live long: least connections fills a restarted replica back up,
    # where round robin would only balance new connections, not sessions held.
    balance leastconn
    option httpchk GET {check_path}
    http-check expect status 200
    default-server check inter {inter}ms fastinter 100ms downinter {inter}ms fall {fall} rise {rise}
{servers}

frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


class HAProxy:
    """HAProxy in front of the replicas: one URL for agents and the API, health checks on
    ``READINESS_PATH``; the stats page tells which replicas it has in rotation."""

    BACKEND = "replicas"

    def __init__(
        self,
        group: ProcessGroup,
        binary: str,
        directory: Path,
        replicas: Sequence[ServerProcess],
    ) -> None:
        self.binary = binary
        self.replicas = list(replicas)
        self.port = free_port()
        self.stats_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/v1/agent/ws"
        self.config_path = directory / "haproxy.cfg"
        self.process = group.add("haproxy", [binary, "-db", "-f", str(self.config_path)], {})

    def config(self) -> str:
        servers = "\n".join(
            f"    server {replica.name} {replica.host}:{replica.port}" for replica in self.replicas
        )
        return HAPROXY_CONFIG.format(
            port=self.port,
            stats_port=self.stats_port,
            check_path=READINESS_PATH,
            inter=HAPROXY_CHECK_INTERVAL_MS,
            fall=HAPROXY_FALL,
            rise=HAPROXY_RISE,
            servers=servers,
        )

    async def start(self, seconds: float = 10.0) -> None:
        """Write the configuration, have HAProxy check it, run it, wait until all are UP."""
        self.config_path.write_text(self.config(), encoding="utf-8")
        check = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            "-f",
            str(self.config_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await check.communicate()
        assert check.returncode == 0, f"haproxy.cfg is invalid:\n{output.decode()}"
        self.process.start()
        await self.wait_for({replica.name: "UP" for replica in self.replicas}, seconds)

    async def states(self) -> dict[str, str]:
        """Each replica's state in HAProxy (``UP``, ``DOWN``, ``UP 1/2`` while rising...)."""
        async with httpx.AsyncClient(timeout=1.0) as client:
            response = await client.get(f"http://127.0.0.1:{self.stats_port}/stats;csv")
        response.raise_for_status()
        rows = csv.DictReader(io.StringIO(response.text.removeprefix("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == self.BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    async def wait_for(self, expected: Mapping[str, str], seconds: float) -> None:
        """Wait until HAProxy shows the replicas named in ``expected`` in those states."""

        async def reached() -> bool:
            if not self.process.running():
                raise AssertionError(f"haproxy exited:\n{self.process.log()}")
            try:
                states = await self.states()
            except httpx.TransportError:
                return False
            return all(states.get(name) == state for name, state in expected.items())

        await eventually(reached, seconds, f"HAProxy shows {dict(expected)}")


class AgentProcess:
    """``wiremesh agent up`` for one state directory (enrolled beforehand).

    ``full_cli`` runs it through the ``wiremesh`` command; otherwise through
    ``python -m wiremesh.agent``, the same code without the server's import time.
    """

    def __init__(
        self,
        group: ProcessGroup,
        name: str,
        state_dir: Path,
        env: Mapping[str, str],
        *,
        full_cli: bool = False,
    ) -> None:
        self.name = name
        self.state_dir = state_dir
        command = [*WIREMESH, "agent"] if full_cli else AGENT_ONLY
        self.process = group.add(
            name,
            [*command, "up", "--state-dir", str(state_dir), "--backend", "memory"],
            {**env, **AGENT_ENV},
        )

    def start(self) -> None:
        self.process.start()

    def log(self) -> str:
        return self.process.log()
