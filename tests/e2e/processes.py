"""Real wiremesh processes for end-to-end tests: the server and agents as subprocesses.

Each process runs in its own process group with its output in a log file; the
``processes`` fixture kills every group at teardown, whatever the test did, and prints
the logs (pytest shows them when a test fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

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

AGENT_ENV = {
    "WIREMESH_AGENT_BACKOFF_BASE": "0.1",
    "WIREMESH_AGENT_BACKOFF_CAP": "0.5",
}


def clean_environ() -> dict[str, str]:
    """This environment without any WIREMESH_* variable, so tests are hermetic."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIREMESH_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(
    probe: Callable[[], Awaitable[T | None]], seconds: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(interval)


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

    ``name`` tells the logs of replicas on one database apart.
    """

    def __init__(
        self, group: ProcessGroup, env: Mapping[str, str], port: int, *, name: str = "server"
    ) -> None:
        self.group = group
        self.name = name
        self.env = {**env, "WIREMESH_HOST": "127.0.0.1", "WIREMESH_PORT": str(port)}
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.current: Process | None = None
        self.starts = 0

    async def start(self, seconds: float = 30.0) -> None:
        self.starts += 1
        process = self.group.add(f"{self.name}-{self.starts}", [*WIREMESH, "server"], self.env)
        process.start()
        self.current = process

        async def healthy() -> bool:
            if not process.running():
                raise AssertionError(f"the server exited early:\n{process.log()}")
            try:
                async with httpx.AsyncClient(timeout=1.0) as client:
                    response = await client.get(f"{self.url}/healthz")
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await eventually(healthy, seconds, "the server answers /healthz", interval=0.1)

    def kill(self) -> None:
        assert self.current is not None
        self.current.kill()


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
