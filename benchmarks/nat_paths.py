"""Time from ``agent up`` to the first ping over each kind of path, and TCP throughput
through a relay against a direct path, with real agents and wireguard-go behind the
namespace lab's NAT routers (root, wireguard-go, wireguard-tools, nftables, iperf3).

    python -m benchmarks.nat_paths [--runs 5] [--iperf-seconds 5] [--json out.json]

Each run enrolls two fresh devices on fresh machines and starts both agents at once; the
clock runs from that start to the first echo reply each way (pings every 0.1 s, 0.3 s
wait; the relay may carry it), and on to both agents reporting the path in their status.
Paths: ``local`` (two behind one masquerade router), ``direct`` (behind two
masquerade routers: knocks from both ends), ``relay`` (behind two symmetric routers, through
relay ``r1``). After the last run of ``direct`` and ``relay``, iperf3 sends TCP from one
device to the other's overlay address for ``--iperf-seconds``.

The lab and the mesh are the namespace tests' (:mod:`tests.netns`): the same code proves
the paths in CI, and times them here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns.lab import Lab, Machine, NatMode, missing_requirements, remove_stale
from tests.netns.mesh import RELAY_TOKEN, Agent, Mesh, NatMesh, ping
from tests.support.processes import ProcessGroup

from benchmarks.report import log

PATHS = ("local", "direct", "relay")
PING_EVERY = 0.1
FIRST_PING_LIMIT = 60.0


@dataclass
class PathResult:
    path: str
    seconds: list[float] = field(default_factory=list)
    """``agent up`` to the first echo reply both ways (over whatever path carried it)."""
    formed: list[float] = field(default_factory=list)
    """``agent up`` to both agents reporting this path for each other."""
    failures: int = 0
    mbits: float | None = None


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def first_reply_after(
    machine: Machine, address: str, started: float, limit: float = FIRST_PING_LIMIT
) -> float | None:
    """Seconds from ``started`` (monotonic) to the first echo reply, pinging every 0.1 s;
    None if none came within ``limit`` seconds."""
    deadline = started + limit
    while time.monotonic() < deadline:
        attempt = time.monotonic()
        if await ping(machine, address, 0.3):
            return time.monotonic() - started
        await asyncio.sleep(max(0.0, PING_EVERY - (time.monotonic() - attempt)))
    return None


class Bench:
    def __init__(self, lab: Lab, nat: NatMesh) -> None:
        self.lab = lab
        self.nat = nat
        self.machines = 10  # machine numbers in use so far (1 is the relay's)
        self.routers = 0
        self.devices = 0

    async def pair(self, path: str) -> tuple[Agent, Agent]:
        """Two enrolled devices placed so that ``path`` is the one they should take."""
        mesh = self.nat.mesh
        if path == "local":
            self.routers += 1
            router = self.lab.router(self.routers, NatMode.MASQUERADE)
            machines = []
            for _ in range(2):
                self.machines += 1
                machines.append(self.lab.machine(self.machines, behind=router))
        else:
            mode = NatMode.MASQUERADE if path == "direct" else NatMode.SYMMETRIC
            machines = []
            for _ in range(2):
                self.machines += 1
                self.routers += 1
                router = self.lab.router(self.routers, mode)
                machines.append(self.lab.machine(self.machines, behind=router))
        agents = []
        for machine in machines:
            self.devices += 1
            agents.append(
                await mesh.enroll(f"bench{self.devices}", machine, 51820 + self.devices % 1000)
            )
        return agents[0], agents[1]

    async def run_once(self, path: str) -> tuple[float | None, float | None, tuple[Agent, Agent]]:
        """Seconds to the first ping both ways and to the path on both ends (``None``: not
        within the limit), and the pair, still running."""
        a, b = await self.pair(path)
        started = time.monotonic()
        a.start()
        b.start()
        both = await asyncio.gather(
            first_reply_after(a.machine, b.virtual_ip, started),
            first_reply_after(b.machine, a.virtual_ip, started),
        )
        if None in both:
            return None, None, (a, b)
        pinged = max(t for t in both if t is not None)
        seen: set[str] = set()
        while time.monotonic() - started < FIRST_PING_LIMIT:
            seen = {a.paths().get(b.name, ("?", None))[0], b.paths().get(a.name, ("?", None))[0]}
            if seen == {path}:
                return pinged, time.monotonic() - started, (a, b)
            await asyncio.sleep(0.1)
        log(f"{path}: the agents report {seen} after {FIRST_PING_LIMIT:.0f} s")
        return pinged, None, (a, b)


def iperf(a: Agent, b: Agent, seconds: float) -> float:
    """TCP from ``a`` to ``b``'s overlay address; megabits per second received."""
    server = subprocess.Popen(
        b.machine.argv("iperf3", "-s", "-1", "-B", b.virtual_ip),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        result = a.machine.sh("iperf3", "-c", b.virtual_ip, "-t", f"{seconds:g}", "-J", check=True)
        report = json.loads(result.stdout)
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        server.kill()
        server.wait()


async def bench(runs: int, iperf_seconds: float, workdir: Path) -> list[PathResult]:
    removed = remove_stale()
    if removed:
        log(f"removed leftovers of a crashed run: {', '.join(removed)}")
    lab = Lab()
    processes = ProcessGroup(workdir)
    results = {path: PathResult(path) for path in PATHS}
    try:
        lab.start()
        mesh = Mesh(lab, processes, workdir, {"WIREMESH_RELAY_TOKEN": RELAY_TOKEN})
        await mesh.start_server()
        await mesh.create_org()
        nat = NatMesh(mesh)
        await nat.add_relay("r1", lab.machine(1))
        bench = Bench(lab, nat)
        for number in range(runs):
            for path in PATHS:
                took, formed, (a, b) = await bench.run_once(path)
                result = results[path]
                if took is None or formed is None:
                    result.failures += 1
                    log(f"{path} run {number + 1}: no reply or no {path} path in time")
                else:
                    result.seconds.append(took)
                    result.formed.append(formed)
                    log(f"{path} run {number + 1}: first ping both ways after {took:.2f} s, "
                        f"{path} path on both ends after {formed:.2f} s")  # fmt: skip
                if number == runs - 1 and path in ("direct", "relay") and formed is not None:
                    result.mbits = await asyncio.to_thread(iperf, a, b, iperf_seconds)
                    log(f"{path}: iperf3 {result.mbits:.0f} Mbit/s")
                for agent in (a, b):
                    agent.process.kill()
    finally:
        processes.cleanup()
        lab.cleanup()
    return [results[path] for path in PATHS]


def table(results: list[PathResult], runs: int) -> str:
    direct = next((r.mbits for r in results if r.path == "direct"), None)
    lines = [
        "| path | runs ok | agent up → first ping both ways, p50 / p99 | → on this path, "
        "p50 / p99 | TCP (iperf3) | vs direct |",
        "|---|---|---|---|---|---|",
    ]

    def spread(values: list[float]) -> str:
        p50, p99 = quantile(values, 0.5), quantile(values, 0.99)
        return "n/a" if p50 is None or p99 is None else f"{p50:.2f} s / {p99:.2f} s"

    for result in results:
        mbits = f"{result.mbits:.0f} Mbit/s" if result.mbits is not None else "-"
        ratio = f"{result.mbits / direct:.2f}x" if result.mbits is not None and direct else "-"
        cells = [
            result.path,
            f"{len(result.seconds)}/{runs}",
            spread(result.seconds),
            spread(result.formed),
            mbits,
            ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per path (default 5)")
    parser.add_argument("--iperf-seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    reason = missing_requirements("nft", "iperf3")
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wiremesh-nat-") as directory:
        results = asyncio.run(bench(args.runs, args.iperf_seconds, Path(directory)))
    print(table(results, args.runs))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "path": r.path,
                        "first_ping_seconds": r.seconds,
                        "path_formed_seconds": r.formed,
                        "failures": r.failures,
                        "mbits": r.mbits,
                    }
                    for r in results
                ],
                indent=1,
            )
        )
    return 0 if all(r.failures == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
