"""The real server as a subprocess, with its CPU, RSS and responsiveness sampled over time.

CPU and RSS come from ``/proc/<pid>/stat`` and ``/proc/<pid>/status``. The server exposes no
event-loop lag metric, so :class:`Probe` approximates it: a keep-alive ``GET /healthz``
every ``interval`` seconds, whose round trip is the time the request waited for the loop
plus a tiny handler (on an idle server it is ~1 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")


def server_command(host: str, port: int, prelude: str = "") -> list[str]:
    """``python -m wiremesh server`` when the package has a __main__, else the CLI entry.

    ``prelude`` is Python run before the CLI in the server process (to try a tweak such as
    ``import gc; gc.freeze()`` without editing the server).
    """
    args = ["server", "--host", host, "--port", str(port)]
    if prelude:
        code = f"{prelude}\nfrom wiremesh.cli import main\nmain()"
        return [sys.executable, "-c", code, *args]
    if find_spec("wiremesh.__main__") is not None:
        return [sys.executable, "-m", "wiremesh", *args]
    return [sys.executable, "-c", "from wiremesh.cli import main; main()", *args]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Sample:
    at: float
    cpu: float
    rss: int


@dataclass
class Window:
    """Server figures between two instants."""

    cpu_percent: float
    cpu_percent_max_5s: float
    rss_end: int
    rss_max: int
    lag_p50: float | None
    lag_p99: float | None
    lag_max: float | None
    probes: int


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass
class ServerProcess:
    """One server process; ``env`` adds WIREMESH_* settings to the inherited environment."""

    host: str
    port: int
    env: dict[str, str]
    log_path: Path
    prelude: str = ""
    popen: subprocess.Popen[bytes] | None = None
    samples: list[Sample] = field(default_factory=list)
    started_at: float = 0.0
    ready_at: float = 0.0
    _sampler: asyncio.Task[None] | None = None
    probe: Probe | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def start(self, ready_timeout: float = 60.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIREMESH_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                server_command(self.host, self.port, self.prelude),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.time()
        deadline = time.monotonic() + ready_timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if not self.running():
                    raise RuntimeError(f"the server exited at start; see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server was not ready in time; see {self.log_path}")
                await asyncio.sleep(0.05)
        self.ready_at = time.time()
        self._sampler = asyncio.create_task(self._sample_forever())
        self.probe = Probe(self.base_url)
        self.probe.start()

    async def _sample_forever(self, every: float = 1.0) -> None:
        while self.running():
            with contextlib.suppress(OSError, ValueError):
                self.samples.append(Sample(time.time(), cpu_seconds(self.pid), rss_bytes(self.pid)))
            await asyncio.sleep(every)

    def sample_now(self) -> Sample:
        sample = Sample(time.time(), cpu_seconds(self.pid), rss_bytes(self.pid))
        self.samples.append(sample)
        return sample

    def window(self, start: float, end: float) -> Window:
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2:
            inside = sorted(self.samples, key=lambda s: abs(s.at - end))[:2]
            inside.sort(key=lambda s: s.at)
        first, last = inside[0], inside[-1]
        span = max(last.at - first.at, 1e-9)
        busiest = 0.0
        for i, sample in enumerate(inside):
            for later in inside[i + 1 :]:
                if later.at - sample.at >= 5.0:
                    busiest = max(busiest, (later.cpu - sample.cpu) / (later.at - sample.at))
                    break
        lags = self.probe.between(start, end) if self.probe else []
        return Window(
            cpu_percent=(last.cpu - first.cpu) / span * 100,
            cpu_percent_max_5s=busiest * 100,
            rss_end=last.rss,
            rss_max=max(s.rss for s in inside),
            lag_p50=percentile(lags, 50) if lags else None,
            lag_p99=percentile(lags, 99) if lags else None,
            lag_max=max(lags) if lags else None,
            probes=len(lags),
        )

    async def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = 60.0) -> float:
        """Send ``sig``; wait for the exit (SIGKILL after ``grace`` s); returns when it was sent."""
        sent = time.time()
        if self.popen is None:
            return sent
        if self.probe is not None:
            await self.probe.stop()
        if self._sampler is not None:
            self._sampler.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, sig)
        deadline = time.monotonic() + grace
        while self.popen.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        return sent


class Probe:
    """``GET /healthz`` on one keep-alive connection every ``interval`` s; round trips kept."""

    def __init__(self, base_url: str, interval: float = 0.2) -> None:
        self.base_url = base_url
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def between(self, start: float, end: float) -> list[float]:
        return [rtt for at, rtt in self.samples if start <= at <= end]

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30.0, limits=limits) as client:
            while True:
                started = time.perf_counter()
                try:
                    await client.get("/healthz")
                except httpx.HTTPError:
                    await asyncio.sleep(self.interval)
                    continue
                self.samples.append((time.time(), time.perf_counter() - started))
                await asyncio.sleep(self.interval)


async def profile(pid: int, output: Path, rate: int = 50) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` (raw collapsed stacks) on ``pid``; stop it with SIGINT."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return None
    return subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [
            str(py_spy),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_frames(collapsed: Path, count: int = 10) -> dict[str, list[tuple[str, float]]]:
    """Self (leaf) and inclusive share of samples per frame, from py-spy's raw output."""
    leaf: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        total += samples
        frames = stack.split(";")
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + samples
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
    if total == 0:
        return {"self": [], "inclusive": []}

    def top(table: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(table.items(), key=lambda item: item[1], reverse=True)[:count]
        return [(frame, round(100 * n / total, 1)) for frame, n in ranked]

    return {"self": top(leaf), "inclusive": top(inclusive)}


def stop_profile(
    profiler: subprocess.Popen[bytes], output: Path, count: int = 10
) -> dict[str, list[tuple[str, float]]] | None:
    """Stop a :func:`profile` run (SIGINT; killed if it has not ended in 30 s); its top
    frames, if it wrote any."""
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()
    return top_frames(output, count=count) if output.exists() else None


def other_cpu(loadgen_pids: list[int]) -> dict[str, dict[int, float]]:
    """CPU seconds so far of each load generator process and each PostgreSQL process."""
    postgres = []
    for status in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if status.read_text().strip() == "postgres":
                postgres.append(int(status.parent.name))
    return {"loadgen": cpu_of(loadgen_pids), "postgresql": cpu_of(postgres)}


def cpu_of(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            seconds[pid] = cpu_seconds(pid)
    return seconds


def seconds_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds a set of processes used between two readings of :func:`cpu_of`."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def cpu_percent_between(before: dict[int, float], after: dict[int, float], elapsed: float) -> float:
    """CPU % of a set of processes between two readings; a process that started in between
    counts whole, one that exited in between is missed (short-lived backends)."""
    return seconds_between(before, after) / elapsed * 100 if elapsed > 0 else 0.0


def combined_window(servers: list[ServerProcess], start: float, end: float) -> Window:
    """One window over all replicas: CPU and RSS summed, loop lag over every probe."""
    windows = [server.window(start, end) for server in servers]
    if len(windows) == 1:
        return windows[0]
    lags = [rtt for server in servers if server.probe for rtt in server.probe.between(start, end)]
    return Window(
        cpu_percent=sum(w.cpu_percent for w in windows),
        cpu_percent_max_5s=sum(w.cpu_percent_max_5s for w in windows),
        rss_end=sum(w.rss_end for w in windows),
        rss_max=sum(w.rss_max for w in windows),
        lag_p50=percentile(lags, 50) if lags else None,
        lag_p99=percentile(lags, 99) if lags else None,
        lag_max=max(lags) if lags else None,
        probes=len(lags),
    )
