"""Load generator: simulated agents (:mod:`benchmarks.simagents`) in several processes,
driven from here.

Several worker processes share the agents (agent ``i`` lives in worker ``i % processes``);
each spreads its sockets over the source addresses 127.0.0.2..127.0.0.N, because one source
address only has ~28,000 ephemeral ports towards one server port. :class:`LoadGen` drives
the workers over their stdin/stdout with one JSON object per line;
``python -m benchmarks.loadgen run`` is a standalone driver.

Timestamps are ``time.time()`` (one clock for every process of the machine and the
database's ``now()``), so latencies can be computed across processes and against rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.simagents import measure_parsers, raise_nofile_limit, run_event_loop

AGENT_PATH = "/api/v1/agent/ws"
PER_SOURCE_ADDRESS = 10_000
"""Sockets per source address; well under the ~28k ephemeral ports of the default range."""

_REPO_ROOT = Path(__file__).resolve().parent.parent


def source_addresses(agents: int) -> int:
    """How many loopback source addresses to spread ``agents`` sockets over."""
    return max(2, math.ceil(agents / PER_SOURCE_ADDRESS))


def ws_url(host: str, port: int) -> str:
    return f"ws://{host}:{port}{AGENT_PATH}"


# --------------------------------------------------------------------------- driver


class LoadGen:
    """Drives worker processes; agent ``i`` (an index into ``credentials``) is in ``i % n``.

    ``urls`` are the server replicas; every agent starts on the first, :meth:`route` moves it.
    """

    def __init__(
        self,
        urls: str | list[str],
        credentials: list[str],
        *,
        processes: int,
        addresses: int | None = None,
        parser: str = "light",
        backoff_base: float = 0.5,
        backoff_cap: float = 5.0,
        max_pending: int = 200,
        peer_dict_max: int = 2000,
        log_dir: Path | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.credentials = credentials
        self.processes = max(1, processes)
        self.addresses = addresses or source_addresses(len(credentials))
        self.parser = parser
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_pending = max_pending
        self.peer_dict_max = peer_dict_max
        self.log_dir = log_dir
        self.pids: list[int] = []
        self._procs: list[asyncio.subprocess.Process] = []
        self._readers: list[asyncio.Task[None]] = []
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._write_locks: list[asyncio.Lock] = []

    async def __aenter__(self) -> LoadGen:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        for number in range(self.processes):
            stderr: Any = None
            if self.log_dir is not None:
                stderr = (self.log_dir / f"loadgen-{number}.log").open("ab")
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.simagents",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
                limit=1 << 28,
            )
            if stderr is not None:
                stderr.close()
            self._procs.append(proc)
            self._write_locks.append(asyncio.Lock())
            self._readers.append(asyncio.create_task(self._read(proc)))
        answers = await asyncio.gather(
            *(
                self._call(
                    number,
                    "init",
                    urls=self.urls,
                    agents=[
                        (i, self.credentials[i])
                        for i in range(number, len(self.credentials), self.processes)
                    ],
                    addresses=self.addresses,
                    parser=self.parser,
                    backoff_base=self.backoff_base,
                    backoff_cap=self.backoff_cap,
                    max_pending=max(1, self.max_pending // self.processes),
                    peer_dict_max=self.peer_dict_max,
                    seed=number,
                )
                for number in range(self.processes)
            )
        )
        self.pids = [answer["pid"] for answer in answers]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(60):
                await asyncio.gather(
                    *(self._call(n, "quit") for n in range(len(self._procs))),
                    return_exceptions=True,
                )
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
        for reader in self._readers:
            reader.cancel()
        self._procs.clear()

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            future = self._waiting.pop(message["id"], None)
            if future is None or future.done():
                continue
            if message["error"]:
                future.set_exception(RuntimeError(f"load generator worker: {message['error']}"))
            else:
                future.set_result(message["result"])
        for future in list(self._waiting.values()):
            if not future.done():
                future.set_exception(RuntimeError("a load generator worker exited"))

    async def _call(self, number: int, command: str, **args: Any) -> Any:
        proc = self._procs[number]
        assert proc.stdin is not None
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        line = json.dumps({"id": request_id, "cmd": command, "args": args}).encode() + b"\n"
        async with self._write_locks[number]:
            proc.stdin.write(line)
            await proc.stdin.drain()
        return await future

    def _split(self, indices: Iterable[int]) -> dict[int, list[int]]:
        parts: dict[int, list[int]] = {}
        for index in indices:
            parts.setdefault(index % self.processes, []).append(index)
        return parts

    async def _each(self, indices: Iterable[int], command: str, **args: Any) -> list[Any]:
        parts = self._split(indices)
        return list(
            await asyncio.gather(
                *(self._call(n, command, indices=part, **args) for n, part in parts.items())
            )
        )

    async def _all(self, command: str, **args: Any) -> list[Any]:
        return list(
            await asyncio.gather(*(self._call(n, command, **args) for n in range(self.processes)))
        )

    async def connect(self, indices: Iterable[int], *, ramp: bool = True) -> int:
        return sum(await self._each(indices, "connect", ramp=ramp))

    async def route(self, indices: Iterable[int], replica: int) -> int:
        """Point these agents at server ``replica``; takes effect at their next connect."""
        return sum(await self._each(indices, "route", replica=replica))

    async def silence(self, indices: Iterable[int]) -> dict[int, dict[str, Any]]:
        return _merge(await self._each(indices, "silence"))

    async def close(
        self, indices: Iterable[int], *, concurrency: int = 50
    ) -> dict[int, dict[str, Any]]:
        """Close cleanly; ``concurrency`` closes in flight per worker process."""
        return _merge(await self._each(indices, "close", concurrency=concurrency))

    async def sessions(self, indices: Iterable[int]) -> dict[int, dict[str, Any]]:
        return _merge(await self._each(indices, "sessions"))

    async def watch(self, peer_ids: list[str]) -> None:
        await self._all("watch", peer_ids=peer_ids)

    async def arrivals(self, peer_id: str) -> dict[int, float]:
        return _merge(await self._all("arrivals", peer_id=peer_id))

    async def stats(self, since: float = 0.0) -> dict[str, Any]:
        parts = await self._all("stats", since=since)
        states: Counter[str] = Counter()
        totals: Counter[str] = Counter()
        codes: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for part in parts:
            states.update(part["states"])
            totals.update(part["totals"])
            codes.update(part["close_codes"])
            errors.update(part["connect_errors"])
        return {
            "established": states.get("established", 0),
            "states": dict(states),
            "welcomed_since": sum(part["welcomed_since"] for part in parts),
            "last_welcome_at": max(part["last_welcome_at"] for part in parts),
            "totals": dict(totals),
            "close_codes": dict(codes),
            "connect_errors": dict(errors),
        }

    async def wait_established(
        self,
        count: int,
        seconds: float,
        *,
        since: float = 0.0,
        poll: float = 0.25,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until ``count`` agents are established (welcomed at or after ``since``)."""
        deadline = time.monotonic() + seconds
        while True:
            stats = await self.stats(since)
            if progress is not None:
                progress(stats)
            if stats["welcomed_since"] >= count or time.monotonic() >= deadline:
                return stats
            await asyncio.sleep(poll)


def _merge(parts: list[dict[Any, Any]]) -> dict[int, Any]:
    merged: dict[int, Any] = {}
    for part in parts:
        merged.update({int(key): value for key, value in part.items()})
    return merged


# --------------------------------------------------------------------------- CLI


async def _standalone(args: argparse.Namespace) -> dict[str, Any]:
    text = await asyncio.to_thread(Path(args.credentials).read_text)
    credentials = [line.strip() for line in text.splitlines() if line.strip()]
    if args.agents:
        credentials = credentials[: args.agents]
    url = args.url
    async with LoadGen(
        url,
        credentials,
        processes=args.processes,
        parser=args.parser,
        backoff_base=args.backoff_base,
        backoff_cap=args.backoff_cap,
        max_pending=args.max_pending,
    ) as loadgen:
        started = time.time()
        await loadgen.connect(range(len(credentials)))
        stats = await loadgen.wait_established(
            len(credentials),
            args.ramp_timeout,
            progress=lambda s: print(f"established {s['established']}", file=sys.stderr),
            poll=1.0,
        )
        ramp = time.time() - started
        await asyncio.sleep(args.hold)
        held = await loadgen.stats()
        return {
            "agents": len(credentials),
            "ramp_seconds": ramp,
            "established_after_ramp": stats["established"],
            "after_hold": held,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    costs = sub.add_parser("parsers", help="measure the cost of the two frame parsers")
    costs.add_argument("--peers", type=int, default=100)
    run = sub.add_parser("run", help="connect agents to a running server and hold them")
    run.add_argument("--url", required=True, help=f"e.g. ws://127.0.0.1:8080{AGENT_PATH}")
    run.add_argument("--credentials", required=True, help="file with one device credential a line")
    run.add_argument("--agents", type=int, default=0, help="only the first N credentials")
    run.add_argument("--processes", type=int, default=max(2, os.cpu_count() or 2))
    run.add_argument("--parser", choices=("light", "session"), default="light")
    run.add_argument("--hold", type=float, default=60.0, help="seconds to hold once connected")
    run.add_argument("--ramp-timeout", type=float, default=600.0)
    run.add_argument("--max-pending", type=int, default=200, help="handshakes in flight")
    run.add_argument("--backoff-base", type=float, default=0.5)
    run.add_argument("--backoff-cap", type=float, default=5.0)
    run.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    if args.command == "parsers":
        print(json.dumps(measure_parsers(args.peers), indent=2))
        return
    raise_nofile_limit()
    result = run_event_loop(lambda: _standalone(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
