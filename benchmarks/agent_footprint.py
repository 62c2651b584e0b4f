"""The agent's footprint: idle memory and start to first ping, with 1, 10 and 100 peers,
with a real agent and wireguard-go in the namespace lab (root, wireguard-go,
wireguard-tools).

    python -m benchmarks.agent_footprint [--peers 1,10,100] [--runs 3] [--idle 10]
                                         [--json out.json] [--workdir logs]

The lab's server, one real peer agent (``wiremesh agent up`` on machine 2, always running),
and for ``N`` peers ``N - 1`` more devices enrolled through the API whose sessions the load
generator holds (:mod:`benchmarks.loadgen`: real WebSockets, no WireGuard), so that they
are online peers with endpoints, as a real agent sees them. Each run enrolls a fresh
device on machine 1 and starts ``wiremesh agent up --backend wireguard-go`` there (the
command people run); the clock runs from that start to the first echo reply from the real
peer (pings every 0.1 s, 0.3 s wait). Then, once its WireGuard has every peer, the agent is
left alone for ``--idle`` seconds and its resident memory read from ``/proc``
(``VmRSS``, and the peak ``VmHWM``); wireguard-go's is read beside it, as information (it
is another program). The device is revoked after its run, so every run sees the same peers.

Targets: ≤ 1 s start to first ping on an idle machine, ≤ 45 MiB agent RSS with 100 peers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.netns.lab import Lab, missing_requirements, remove_stale
from tests.netns.mesh import PYTHON, Mesh
from tests.support.processes import AGENT_ENV, Process, ProcessGroup, clean_environ
from tests.support.waiting import eventually

from benchmarks.loadgen import LoadGen
from benchmarks.nat_paths import first_reply_after, quantile
from benchmarks.report import log
from wiremesh.agent.enroll import enroll
from wiremesh.agent.keys import generate_keypair

FIRST_PING_TARGET = 1.0
RSS_TARGET_MIB = 45.0
RSS_TARGET_PEERS = 100
FIRST_PING_LIMIT = 30.0
WIREMESH_COMMAND = (PYTHON, "-m", "wiremesh")
"""``wiremesh`` as installed: the console script runs this module's ``main``."""
_WIREGUARD_GO_PID = re.compile(r"wireguard-go: started for wm0 \(pid (\d+)\)")


@dataclass
class PeersResult:
    peers: int
    first_ping: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    wireguard_go_mib: list[float] = field(default_factory=list)
    failures: int = 0


def memory_mib(pid: int) -> tuple[float, float]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class Bench:
    def __init__(self, mesh: Mesh, workdir: Path, idle: float) -> None:
        self.mesh = mesh
        self.workdir = workdir
        self.idle = idle
        self.machine = mesh.lab.machine(1)
        self.runs = 0
        self.held: list[str] = []
        """Credentials of the devices the load generator holds online."""

    async def enroll_held(self, count: int) -> list[str]:
        """``count`` more devices enrolled through the API (their keys are thrown away: no
        WireGuard runs for them, only their sessions)."""
        credentials: list[str] = []
        async with httpx.AsyncClient(base_url=self.mesh.url, timeout=30) as client:
            for _ in range(count):
                response = await client.post(
                    "/api/v1/enroll",
                    json={
                        "setup_key": self.mesh.setup_key,
                        "hostname": f"held{len(self.held) + len(credentials) + 1}",
                        "public_key": generate_keypair().public_key,
                    },
                )
                response.raise_for_status()
                credentials.append(response.json()["credential"])
        self.held.extend(credentials)
        return credentials

    async def run_once(self, peers: int, real_peer: str) -> tuple[float, float, float, float]:
        """One fresh device's agent: start to first ping, idle RSS, peak, wireguard-go RSS."""
        self.runs += 1
        name = f"measured{self.runs}"
        state_dir = self.workdir / "agents" / name
        await enroll(state_dir, [self.mesh.url], self.mesh.setup_key, name)
        process: Process = self.mesh.processes.add(
            f"agent-{name}",
            self.machine.argv(
                *WIREMESH_COMMAND, "agent", "up", "--state-dir", str(state_dir),
                "--backend", "wireguard-go", "--interface", "wm0", "--listen-port", "51820",
            ),
            {**clean_environ(), **AGENT_ENV},
        )  # fmt: skip
        started = time.monotonic()
        process.start()
        self.mesh.lab.record(process.pid)
        try:
            took = await first_reply_after(self.machine, real_peer, started, FIRST_PING_LIMIT)
            if took is None:
                raise RuntimeError(f"no reply from the real peer:\n{process.log()}")

            async def every_peer() -> bool:
                result = await asyncio.to_thread(
                    self.machine.sh, "wg", "show", "wm0", "peers", check=False
                )
                return len(result.stdout.split()) >= peers

            await eventually(every_peer, 60, f"{name} configures {peers} peers", interval=0.2)
            await asyncio.sleep(self.idle)
            rss, peak = memory_mib(process.pid)
            found = _WIREGUARD_GO_PID.search(process.log())
            wireguard_go = memory_mib(int(found[1]))[0] if found else float("nan")
            return took, rss, peak, wireguard_go
        finally:
            process.send(signal.SIGTERM)
            await process.exit_code(20)
            devices = await self.mesh.devices()
            await self.mesh.api(
                "POST", f"/orgs/{self.mesh.org_id}/devices/{devices[name]['id']}/revoke"
            )


async def bench(peer_counts: list[int], runs: int, idle: float, workdir: Path) -> list[PeersResult]:
    removed = remove_stale()
    if removed:
        log(f"removed leftovers of a crashed run: {', '.join(removed)}")
    lab = Lab()
    processes = ProcessGroup(workdir)
    results = [PeersResult(count) for count in peer_counts]
    loadgen: LoadGen | None = None
    try:
        lab.start()
        mesh = Mesh(lab, processes, workdir)
        await mesh.start_server()
        await mesh.create_org()
        real = await mesh.enroll("real", lab.machine(2))
        real.start()
        bench = Bench(mesh, workdir, idle)
        held = await bench.enroll_held(max(peer_counts) - 1)
        ws_url = mesh.url.replace("http://", "ws://") + "/api/v1/agent/ws"
        loadgen = LoadGen(ws_url, held, processes=1, log_dir=workdir)
        await loadgen.start()
        for result in results:
            await loadgen.close(range(len(held)))
            await loadgen.connect(range(result.peers - 1))
            await _online(mesh, result.peers)  # the held and the real peer; none measured
            for number in range(runs):
                try:
                    took, rss, peak, wireguard_go = await bench.run_once(
                        result.peers, real.virtual_ip
                    )
                except (RuntimeError, AssertionError) as exc:
                    result.failures += 1
                    log(f"{result.peers} peers, run {number + 1} failed: {exc}")
                    continue
                result.first_ping.append(took)
                result.rss_mib.append(rss)
                result.peak_mib.append(peak)
                result.wireguard_go_mib.append(wireguard_go)
                log(f"{result.peers} peers, run {number + 1}: first ping after {took:.2f} s, "
                    f"agent RSS {rss:.1f} MiB (peak {peak:.1f}), wireguard-go "
                    f"{wireguard_go:.1f} MiB")  # fmt: skip
    finally:
        if loadgen is not None:
            await loadgen.stop()
        processes.cleanup()
        lab.cleanup()
    return results


async def _online(mesh: Mesh, count: int) -> None:
    """Wait until exactly ``count`` devices of the org are online."""

    async def probe() -> bool:
        devices = await mesh.devices()
        return sum(1 for d in devices.values() if d["online"]) == count

    await eventually(probe, 60, f"{count} devices online", interval=0.2)


def table(results: list[PeersResult], runs: int) -> str:
    lines = [
        "| peers | runs ok | start → first ping, p50 / max | target | agent RSS idle, max "
        "(peak) | target | wireguard-go RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        p50, worst = quantile(result.first_ping, 0.5), quantile(result.first_ping, 1.0)
        ping_cell = "n/a" if p50 is None or worst is None else f"{p50:.2f} s / {worst:.2f} s"
        rss = max(result.rss_mib, default=None)
        peak = max(result.peak_mib, default=None)
        rss_cell = "n/a" if rss is None or peak is None else f"{rss:.1f} MiB ({peak:.1f})"
        wg = max(result.wireguard_go_mib, default=None)
        rss_target = f"≤ {RSS_TARGET_MIB:g} MiB" if result.peers == RSS_TARGET_PEERS else "-"
        cells = [
            str(result.peers),
            f"{len(result.first_ping)}/{runs}",
            ping_cell,
            f"≤ {FIRST_PING_TARGET:g} s",
            rss_cell,
            rss_target,
            "n/a" if wg is None else f"{wg:.1f} MiB",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default="1,10,100", help="peer counts (default 1,10,100)")
    parser.add_argument("--runs", type=int, default=3, help="runs per peer count (default 3)")
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds before RSS")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--workdir", type=Path, help="keep the logs and state dirs here")
    args = parser.parse_args(argv)
    peer_counts = sorted({int(count) for count in args.peers.split(",")})
    if not peer_counts or peer_counts[0] < 1:
        parser.error("peer counts are 1 or more")
    reason = missing_requirements()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = asyncio.run(bench(peer_counts, args.runs, args.idle, args.workdir.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="wiremesh-footprint-") as directory:
            results = asyncio.run(bench(peer_counts, args.runs, args.idle, Path(directory)))
    print(table(results, args.runs))
    if args.json:
        document: list[dict[str, Any]] = [
            {
                "peers": r.peers,
                "first_ping_seconds": r.first_ping,
                "agent_rss_mib": r.rss_mib,
                "agent_peak_mib": r.peak_mib,
                "wireguard_go_rss_mib": r.wireguard_go_mib,
                "failures": r.failures,
            }
            for r in results
        ]
        args.json.write_text(json.dumps(document, indent=1))
    return 0 if all(r.failures == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
