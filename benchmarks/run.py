"""Benchmark runner: figures vs targets for the presence layer, on one machine.

``python -m benchmarks.run [--agents 50000] [--quick] [--json PATH]``

Creates a fresh PostgreSQL database (``WIREMESH_BENCH_POSTGRES_URL``, default
postgres@127.0.0.1:5432), runs the real migrations, seeds orgs/devices in bulk, starts the
real server as a subprocess and drives it with the load generator
(:mod:`benchmarks.loadgen`). Server, PostgreSQL and load generator share the machine. When
one process's open-files limit cannot hold every agent, the hold runs several server
replicas on the same database, each org on one of them (``--replicas`` to choose).

Scenarios, in order: heartbeat write throughput (seed's commit-per-pong vs the batched
flush, no server); hold (ramp to N agents at the normal heartbeat, with the database's
transaction rate measured at ``--xact-agents`` on the way, then hold >= 2 timeouts);
peer-join fan-out; the same to every agent of one org spread over three replicas, beside
one replica (:mod:`benchmarks.replica_fanout`); reconnect storms (SIGKILL, then SIGTERM);
and, on a server with a short heartbeat, silent-agent timeouts and clean closes. One
markdown table is printed and, with ``--json``, written as JSON with every figure and the
machine facts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import resource
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import naive, replica_fanout
from benchmarks.loadgen import LoadGen, raise_nofile_limit, source_addresses, ws_url
from benchmarks.report import Row, fmt_bytes, fmt_ms, fmt_s, judge, log
from benchmarks.seed import Seeded, admin_url, asyncpg_dsn, create_database, drop_database, seed
from benchmarks.server import (
    ServerProcess,
    Window,
    cpu_seconds,
    percentile,
    profile,
    top_frames,
)

SCENARIOS = ("throughput", "hold", "fanout", "fanout_replicas", "timeouts", "storm")
FD_RESERVE = 300
PG_STATS_SETTLE = 12.0
"""Seconds to wait after a ramp before counting transactions: PostgreSQL (15+) backends
report their counts to pg_stat_database up to 10 s after they go idle, so a window opened
at once still counts the ramp's own transactions."""
CLOSE_CONCURRENCY = 5
MASS_CLOSE_CONCURRENCY = 10
"""Clean closes in flight per load generator process when a scenario ends."""
"""Clean closes in flight per load generator process in the close-latency scenario."""
"""File descriptors the server needs besides agent sockets (pool, listener, logs)."""


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    agents: int = 50_000
    org_size: int = 100
    hb_interval: float = 15.0
    hb_timeout: float = 60.0
    flush_interval: float = 1.0
    storm_lease_ttl: float | None = None
    """Replica lease of the restarted server in the storm (None = the server default)."""
    hold_seconds: float = 135.0
    xact_agents: int = 10_000
    xact_window: float = 60.0
    short_interval: float = 1.0
    short_timeout: float = 3.0
    silent_agents: int = 200
    close_agents: int = 200
    fanout_sizes: list[int] = field(default_factory=lambda: [1_000, 10_000])
    fanout_joins: int = 5
    fanout_budget: float = 600.0
    replica_fanout_size: int = 1_000
    """Online agents of the org that ``fanout_replicas`` spreads over several replicas."""
    replica_fanout_replicas: int = 3
    replica_fanout_joins: int = 100
    """Timed joins per setting (one replica, then spread): enough for a p99 over joins."""
    storm_agents: int = 10_000
    storm_signals: list[str] = field(default_factory=lambda: ["SIGKILL", "SIGTERM"])
    throughput_seconds: float = 15.0
    naive_concurrency: int = 32
    batch: int = 0
    """Pongs per flush at the target load; 0 = agents / interval * flush interval."""
    processes: int = 0
    replicas: int = 0
    """Server replicas for the hold (0 = as many as the open-files limit needs)."""
    max_pending: int = 32
    """Handshakes in flight during a ramp (all load generator processes together)."""
    ramp_timeout: float = 0.0
    profile: bool = False
    parser: str = "light"
    server_prelude: str = ""

    @classmethod
    def quick(cls, agents: int) -> Plan:
        return cls(
            agents=agents,
            org_size=50,
            hb_interval=1.0,
            hb_timeout=3.0,
            flush_interval=0.5,
            storm_lease_ttl=2.0,
            hold_seconds=6.5,
            xact_agents=agents,
            xact_window=5.0,
            silent_agents=min(50, agents // 4),
            close_agents=min(50, agents // 4),
            fanout_sizes=[100],
            fanout_joins=3,
            fanout_budget=60.0,
            replica_fanout_size=60,
            replica_fanout_joins=6,
            storm_agents=agents,
            storm_signals=["SIGKILL"],
            throughput_seconds=3.0,
            naive_concurrency=16,
            batch=min(agents, 200),
            max_pending=32,
        )

    def resolved(self) -> Plan:
        plan = Plan(**asdict(self))
        if plan.batch <= 0:
            plan.batch = max(1, round(plan.agents / plan.hb_interval * plan.flush_interval))
        plan.batch = min(plan.batch, plan.agents)
        plan.xact_agents = min(plan.xact_agents, plan.agents)
        plan.replica_fanout_replicas = max(2, plan.replica_fanout_replicas)
        plan.replica_fanout_joins = max(1, plan.replica_fanout_joins)
        plan.storm_agents = min(plan.storm_agents, plan.agents)
        plan.silent_agents = min(plan.silent_agents, plan.agents // 2)
        plan.close_agents = min(plan.close_agents, plan.agents - plan.silent_agents)
        if plan.ramp_timeout <= 0:
            plan.ramp_timeout = max(300.0, plan.agents / 20)
        return plan


# --------------------------------------------------------------------------- results


def machine_facts(pg_version: str) -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ports = ""
    with contextlib.suppress(OSError):
        ports = "-".join(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    try:
        import uvloop

        loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(int(meminfo[1]) / (1 << 20), 1),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "event_loop": loop,
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "ephemeral_ports": ports,
        "kernel": platform.release(),
        "shared": "server, PostgreSQL and load generator run on this one machine",
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def render_table(rows: list[Row], facts: dict[str, Any], plan: Plan) -> str:
    lines = [
        f"Machine: {facts['nproc']} CPU ({facts['cpu_model']}), {facts['memory_gib']} GiB RAM, "
        f"Python {facts['python']}, {facts['event_loop']}, {facts['postgresql']}; "
        f"{facts['shared']}; open-files limit {facts['nofile_limit']}; load average "
        f"{facts['loadavg_start']} at start, {facts.get('loadavg_end', '?')} at end.",
        f"Heartbeat {plan.hb_interval:g} s / timeout {plan.hb_timeout:g} s, "
        f"flush {plan.flush_interval:g} s; short-heartbeat scenarios "
        f"{plan.short_interval:g} s / {plan.short_timeout:g} s.",
        "",
        "| metric | target | measured | ratio/verdict | notes |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        notes = row.notes.replace("|", "/")
        lines.append(f"| {row.metric} | {row.target} | {row.measured} | {row.verdict} | {notes} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, plan: Plan, workdir: Path, *, keep_db: bool = False) -> None:
        self.plan = plan
        self.workdir = workdir
        self.keep_db = keep_db
        self.admin = admin_url()
        self.db_name = f"wiremesh_bench_{os.getpid()}"
        self.db_url = ""
        self.seeded: Seeded | None = None
        self.hold_indices: list[int] = []
        self.fanout_orgs: list[list[int]] = []
        self.replica_fanout_org: list[int] = []
        """The org that ``fanout_replicas`` spreads: its online agents, then two sets of
        fresh joiners (one per setting)."""
        self.replica_fanout_pool_size = 20
        """Per replica for ``fanout_replicas``, on one replica too, so both settings match."""
        self.loadgen: LoadGen | None = None
        self.server: ServerProcess | None = None
        self.server_config: tuple[float, float, float | None, int | None] | None = None
        self.fd_limit = raise_nofile_limit()
        self.replica_count = plan.replicas or max(
            1, math.ceil(plan.agents / (self.fd_limit - FD_RESERVE))
        )
        self.ports = [
            _free_port() for _ in range(max(self.replica_count, plan.replica_fanout_replicas))
        ]
        self.port = self.ports[0]
        self.pool_size = 20
        """Per replica; lowered in setup so every replica's pool and overflow fit the
        database's max_connections (three default pools would not fit PostgreSQL's 100)."""
        self.org_of: dict[int, int] = {}
        """Agent index -> its org's position among the hold orgs (replicas are chosen by org)."""
        self.rows: list[Row] = []
        self.details: dict[str, Any] = {}
        self._server_count = 0
        self.extra_servers: list[ServerProcess] = []
        """Replicas 1.. of the hold, stopped when it ends (or at teardown, if it failed)."""

    # -------------------------------------------------------------- plumbing

    async def setup(self) -> None:
        plan = self.plan
        self.pool_size = await pool_size_for(self.replica_count)
        self.replica_fanout_pool_size = await pool_size_for(plan.replica_fanout_replicas)
        log(f"creating database {self.db_name} and running the migrations")
        self.db_url = await create_database(self.admin, self.db_name)
        hold_sizes = [plan.org_size] * (plan.agents // plan.org_size)
        if plan.agents % plan.org_size:
            hold_sizes.append(plan.agents % plan.org_size)
        started = time.perf_counter()
        replica_fanout_devices = plan.replica_fanout_size + 2 * plan.replica_fanout_joins
        self.seeded = await seed(
            self.db_url, [*hold_sizes, *plan.fanout_sizes, replica_fanout_devices]
        )
        log(
            f"seeded {len(self.seeded.devices)} devices in {len(self.seeded.orgs)} orgs "
            f"in {time.perf_counter() - started:.1f} s"
        )
        hold_orgs = self.seeded.orgs[: len(hold_sizes)]
        self.hold_indices = [d.index for org in hold_orgs for d in org.devices]
        self.org_of = {
            d.index: position for position, org in enumerate(hold_orgs) for d in org.devices
        }
        random.Random(7).shuffle(self.hold_indices)
        fanout_end = len(hold_sizes) + len(plan.fanout_sizes)
        self.fanout_orgs = [
            [d.index for d in org.devices] for org in self.seeded.orgs[len(hold_sizes) : fanout_end]
        ]
        self.replica_fanout_org = [d.index for d in self.seeded.orgs[fanout_end].devices]
        credentials = [d.credential for d in self.seeded.devices]
        busiest = max([plan.agents, *plan.fanout_sizes, replica_fanout_devices])
        processes = plan.processes or max(2, math.ceil(busiest / (self.fd_limit - 2_000)))
        self.loadgen = LoadGen(
            [ws_url("127.0.0.1", port) for port in self.ports],
            credentials,
            processes=processes,
            addresses=source_addresses(busiest),
            parser=plan.parser,
            backoff_base=0.5,
            backoff_cap=5.0,
            max_pending=plan.max_pending,
            log_dir=self.workdir,
        )
        await self.loadgen.start()
        log(f"load generator: {processes} processes (pids {self.loadgen.pids})")

    async def stop_extra_servers(self) -> None:
        while self.extra_servers:
            server = self.extra_servers.pop()
            if server.running():
                await server.stop(signal.SIGTERM)

    async def teardown(self) -> None:
        if self.loadgen is not None:
            await self.loadgen.stop()
        await self.stop_extra_servers()
        if self.server is not None and self.server.running():
            await self.server.stop(signal.SIGTERM)
        if not self.keep_db and self.db_url:
            await drop_database(self.admin, self.db_name)

    @property
    def lg(self) -> LoadGen:
        assert self.loadgen is not None
        return self.loadgen

    @property
    def agents_per_server(self) -> int:
        """Agent sockets one server process can hold under the open-files limit."""
        return self.fd_limit - FD_RESERVE

    async def close_agents(self, indices: list[int]) -> None:
        """Close agents cleanly at the end of a scenario (or to move them elsewhere)."""
        await self.lg.close(indices, concurrency=MASS_CLOSE_CONCURRENCY)

    def server_env(
        self,
        interval: float,
        timeout: float,
        lease_ttl: float | None,
        replica: int = 0,
        pool_size: int | None = None,
    ) -> dict[str, str]:
        env = {
            # Stable per replica, as a deployment names its replicas: a restarted replica
            # ends the rows it left at once instead of waiting for its lease to run out.
            "WIREMESH_SERVER_ID": f"bench-replica-{replica}",
            "WIREMESH_DATABASE_URL": self.db_url,
            "WIREMESH_HEARTBEAT_INTERVAL": str(interval),
            "WIREMESH_HEARTBEAT_TIMEOUT": str(timeout),
            "WIREMESH_HEARTBEAT_FLUSH_INTERVAL": str(self.plan.flush_interval),
            "WIREMESH_LOG_LEVEL": "warning",
            "WIREMESH_DATABASE_POOL_SIZE": str(pool_size or self.pool_size),
            "WIREMESH_DATA_DIR": str(self.workdir / "server-data"),
        }
        if lease_ttl is not None:
            env["WIREMESH_REPLICA_LEASE_TTL"] = str(lease_ttl)
        return env

    async def start_server(
        self,
        interval: float,
        timeout_s: float,
        lease_ttl: float | None = None,
        *,
        pool_size: int | None = None,
    ) -> ServerProcess:
        """A server with this heartbeat (and pool, default ``self.pool_size``); the running
        one is reused when it already has them."""
        config = (interval, timeout_s, lease_ttl, pool_size)
        if self.server is not None and self.server.running() and self.server_config == config:
            return self.server
        if self.server is not None and self.server.running():
            await self.server.stop(signal.SIGTERM)
        self._server_count += 1
        server = ServerProcess(
            "127.0.0.1",
            self.port,
            self.server_env(interval, timeout_s, lease_ttl, pool_size=pool_size),
            self.workdir / f"server-{self._server_count}.log",
            prelude=self.plan.server_prelude,
        )
        await server.start()
        self.server, self.server_config = server, config
        log(f"server pid {server.pid} ready ({interval:g} s / {timeout_s:g} s heartbeat)")
        return server

    async def start_extra_replicas(
        self,
        interval: float,
        timeout_s: float,
        *,
        replicas: int | None = None,
        pool_size: int | None = None,
    ) -> list[ServerProcess]:
        """Replicas 1.. (of the hold's count by default), each on its own port, on replica
        0's database; stopped by :meth:`stop_extra_servers`."""
        servers = []
        for replica in range(1, replicas or self.replica_count):
            self._server_count += 1
            server = ServerProcess(
                "127.0.0.1",
                self.ports[replica],
                self.server_env(interval, timeout_s, None, replica, pool_size),
                self.workdir / f"server-{self._server_count}-replica-{replica}.log",
                prelude=self.plan.server_prelude,
            )
            self.extra_servers.append(server)
            await server.start()
            log(f"replica {replica}: server pid {server.pid} ready on port {server.port}")
            servers.append(server)
        return servers

    async def route_by_org(self, indices: list[int], replicas: int) -> None:
        """Every org on one replica (org position modulo replicas), as a sticky balancer would."""
        parts: dict[int, list[int]] = {}
        for index in indices:
            parts.setdefault(self.org_of.get(index, 0) % replicas, []).append(index)
        for replica, part in parts.items():
            await self.lg.route(part, replica)

    async def restart_server(self, lease_ttl: float | None) -> ServerProcess:
        assert self.server_config is not None
        interval, timeout_s, _, pool_size = self.server_config
        self.server = None
        return await self.start_server(interval, timeout_s, lease_ttl, pool_size=pool_size)

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(asyncpg_dsn(self.admin, self.db_name))

    async def count_rows(self, where: str, *args: Any) -> int:
        connection = await self.db()
        try:
            value = await connection.fetchval(
                f"SELECT count(*) FROM connection_status WHERE {where}", *args
            )
            return int(value)
        finally:
            await connection.close()

    async def xact_counts(self) -> tuple[int, int]:
        connection = await asyncpg.connect(asyncpg_dsn(self.admin))
        try:
            row = await connection.fetchrow(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
                self.db_name,
            )
            assert row is not None
            return int(row["xact_commit"]), int(row["xact_rollback"])
        finally:
            await connection.close()

    async def ramp(self, indices: list[int], what: str) -> tuple[bool, float, dict[str, Any]]:
        """Connect ``indices`` (paced handshakes) and wait until all are established."""
        started = time.time()
        before = (await self.lg.stats())["established"]
        await self.lg.connect(indices)
        last_log = [0.0]

        def progress(stats: dict[str, Any]) -> None:
            if time.monotonic() - last_log[0] >= 10:
                last_log[0] = time.monotonic()
                log(f"{what}: {stats['established']} established, states {stats['states']}")

        stats = await self.lg.wait_established(
            before + len(indices),
            self.plan.ramp_timeout,
            since=0.0,
            poll=0.5,
            progress=progress,
        )
        elapsed = time.time() - started
        ok = stats["welcomed_since"] >= before + len(indices)
        log(f"{what}: {stats['established']} established in {elapsed:.1f} s")
        return ok, elapsed, stats

    def add(self, row: Row) -> None:
        self.rows.append(row)
        log(f"{row.metric}: {row.measured} ({row.verdict}){'; ' + row.notes if row.notes else ''}")

    # -------------------------------------------------------------- scenarios

    async def throughput(self) -> None:
        plan = self.plan
        log(
            f"heartbeat throughput: naive x{plan.naive_concurrency} vs batched "
            f"(batch {plan.batch}), {plan.throughput_seconds:g} s each"
        )
        result = await naive.measure(
            self.db_url,
            seconds=plan.throughput_seconds,
            concurrency=plan.naive_concurrency,
            batch=plan.batch,
        )
        naive_rate = result["naive"].per_second
        batched_rate = result["batched"].per_second
        self.details["throughput"] = {k: asdict(v) for k, v in result.items()}
        self.add(
            Row(
                "heartbeat_naive_pongs_per_s",
                "heartbeat writes, seed's commit-per-pong",
                "baseline",
                f"{naive_rate:,.0f} pongs/s",
                "baseline",
                f"{plan.naive_concurrency} concurrent ORM sessions, 2 row loads + commit per pong",
                value=naive_rate,
            )
        )
        self.add(
            Row(
                "heartbeat_batched_pongs_per_s",
                "heartbeat writes, batched flush",
                "report",
                f"{batched_rate:,.0f} pongs/s",
                "reported",
                f"PresenceHub.record_pong + flush, {plan.batch} sessions per flush, "
                f"{result['batched'].transactions} flushes",
                value=batched_rate,
            )
        )
        ratio = batched_rate / naive_rate if naive_rate else math.nan
        verdict, ok = judge(ratio, 20.0, at_most=False)
        self.add(
            Row(
                "heartbeat_ratio",
                "heartbeat throughput, batched / naive",
                ">= 20x",
                f"{ratio:.1f}x",
                verdict,
                "same database, same rows, back to back",
                value=ratio,
                limit=20.0,
                passed=ok,
            )
        )

    async def hold(self) -> None:
        plan = self.plan
        server = await self.start_server(plan.hb_interval, plan.hb_timeout)
        servers = [server]
        await asyncio.sleep(2.0)
        baseline_rss = server.sample_now().rss
        replicas = self.replica_count
        capacity = (self.fd_limit - FD_RESERVE) * replicas
        target = plan.agents
        count = min(plan.agents, capacity)
        capped = count < target
        if capped:
            log(
                f"only {count} of {target} agents: {replicas} replicas with an open-files "
                f"limit of {self.fd_limit} each (hard; raising it needs CAP_SYS_RESOURCE)"
            )
        # Replica 0's agents first: the transaction rate is measured on one server, before
        # the other replicas start.
        indices = sorted(
            self.hold_indices[:count], key=lambda index: self.org_of.get(index, 0) % replicas != 0
        )
        await self.route_by_org(indices, replicas)
        on_first = sum(1 for index in indices if self.org_of.get(index, 0) % replicas == 0)
        xact_n = min(plan.xact_agents, on_first)

        # Transaction rate at xact_n agents, in a window without connects or disconnects.
        ok, ramp1, _ = await self.ramp(indices[:xact_n], f"ramp to {xact_n}")
        rate_first = xact_n / ramp1 if ramp1 else 0.0
        if ok:
            await asyncio.sleep(max(PG_STATS_SETTLE, 2 * plan.flush_interval))
            await self._xact_window(xact_n)
        else:
            self.add(_not_measured("db_xact_per_flush", "DB transactions per flush interval"))
        if replicas > 1:
            extras = await self.start_extra_replicas(plan.hb_interval, plan.hb_timeout)
            await asyncio.sleep(2.0)
            baseline_rss += sum(extra.sample_now().rss for extra in extras)
            servers += extras

        # Ramp to the full count, then hold.
        profiler = None
        profile_path = self.workdir / "py-spy-hold.txt"
        if plan.profile:
            profiler = await profile(server.pid, profile_path)
        ramp_started = time.time()
        ok2, ramp2, stats = await self.ramp(indices[xact_n:], f"ramp to {count}")
        ramp_window = combined_window(servers, ramp_started, time.time())
        connects_before = stats["totals"]["connects"]
        hold_start = time.time()
        others_before = other_cpu(self.lg.pids)
        log(f"holding {stats['established']} agents for {plan.hold_seconds:g} s")
        await asyncio.sleep(plan.hold_seconds)
        hold_end = time.time()
        others_after = other_cpu(self.lg.pids)
        others = {
            name: cpu_percent_between(
                others_before[name], others_after[name], hold_end - hold_start
            )
            for name in others_after
        }
        window = combined_window(servers, hold_start, hold_end)
        after = await self.lg.stats()
        timeouts = await self.count_rows("status = 'timeout'")
        connected_rows = await self.count_rows("status = 'connected'")
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(Exception):
                profiler.wait(timeout=30)
            if profile_path.exists():
                self.details["profile"] = top_frames(profile_path)
                self.details["profile_path"] = str(profile_path)
        reconnects = after["totals"]["connects"] - connects_before
        held = after["established"]
        pongs = after["totals"]["pongs"]
        self.details["hold"] = {
            "target": target,
            "attempted": count,
            "capped_by_fd_limit": capped,
            "established_after_ramp": stats["established"],
            "established_after_hold": held,
            "reconnects_during_hold": reconnects,
            "timeout_rows": timeouts,
            "connected_rows": connected_rows,
            "close_codes": after["close_codes"],
            "connect_errors": after["connect_errors"],
            "ramp_seconds": ramp1 + ramp2,
            "connect_rate_first": rate_first,
            "pongs_total": pongs,
            "hold_window": asdict(window),
            "ramp_window": asdict(ramp_window),
            "baseline_rss": baseline_rss,
            "pool_size_per_replica": self.pool_size,
            "other_cpu_percent": others,
            "replicas": [{"pid": s.pid, "port": s.port} for s in servers],
            "stalls": [
                (round(at - hold_start, 2), round(rtt, 3))
                for s in servers
                for at, rtt in (s.probe.samples if s.probe else [])
                if hold_start <= at <= hold_end and rtt >= 0.25
            ],
        }
        fine = held == count and timeouts == 0 and reconnects == 0 and ok and ok2
        spread = (
            f"{len(servers)} server replicas on one PostgreSQL, each org on one replica; "
            if len(servers) > 1
            else ""
        )
        notes = (
            f"{spread}orgs of {plan.org_size}; held {plan.hold_seconds:g} s; "
            f"{timeouts} timeout rows, {reconnects} reconnects; "
            f"CPU {window.cpu_percent:.0f}%, RSS {fmt_bytes(window.rss_end)}, "
            f"lag p99 {fmt_ms(window.lag_p99)}"
        )
        if capped:
            notes += f"; capped at {count} by the open-files limit {self.fd_limit}"
        verdict, passed = judge(float(held) if fine else 0.0, float(target), at_most=False)
        if not fine:
            verdict = f"{held / target:.2f}x target, FAIL"
        self.add(
            Row(
                "held_agents",
                f"agents held at {plan.hb_interval:g} s heartbeat, zero timeouts",
                f"{target:,}",
                f"{held:,}",
                verdict,
                notes,
                value=float(held),
                limit=float(target),
                passed=passed if fine else False,
            )
        )
        verdict, passed = judge(float(timeouts), 0.0, at_most=True)
        self.add(
            Row(
                "hold_timeouts",
                "timeout rows while holding",
                "0",
                str(timeouts),
                "pass" if timeouts == 0 else "FAIL",
                f"over {plan.hold_seconds:g} s "
                f"= {plan.hold_seconds / plan.hb_timeout:.1f} heartbeat timeouts",
                value=float(timeouts),
                limit=0.0,
                passed=timeouts == 0,
            )
        )
        self.add(
            Row(
                "server_cpu_hold",
                "server CPU while holding",
                "report",
                f"{window.cpu_percent:.1f}%",
                "reported",
                f"max 5 s window {window.cpu_percent_max_5s:.0f}%; during ramp "
                f"{ramp_window.cpu_percent:.0f}% (100% = one core); meanwhile load generator "
                f"{others['loadgen']:.0f}%, PostgreSQL {others['postgresql']:.0f}%",
                value=window.cpu_percent,
            )
        )
        self.add(
            Row(
                "server_rss_hold",
                "server RSS while holding",
                "report",
                fmt_bytes(window.rss_end),
                "reported",
                f"empty server{'s' if len(servers) > 1 else ''} {fmt_bytes(baseline_rss)}; "
                f"max {fmt_bytes(window.rss_max)}"
                + (f"; sum over {len(servers)} replicas" if len(servers) > 1 else ""),
                value=float(window.rss_end),
            )
        )
        self.add(
            Row(
                "loop_lag_p99_hold",
                "event-loop lag p99 while holding (approx.)",
                "report",
                fmt_ms(window.lag_p99),
                "reported",
                f"GET /healthz round trip every 0.2 s ({window.probes} probes), p50 "
                f"{fmt_ms(window.lag_p50)}, max {fmt_ms(window.lag_max)}; "
                f"during ramp p99 {fmt_ms(ramp_window.lag_p99)}",
                value=window.lag_p99,
            )
        )
        per_conn = (window.rss_end - baseline_rss) / held if held else math.nan
        verdict, passed = judge(per_conn / 1024, 32.0, at_most=True)
        self.add(
            Row(
                "memory_per_connection",
                "memory per idle connection (RSS delta / N)",
                "<= 32 KiB",
                f"{per_conn / 1024:.1f} KiB" if held else "n/a",
                verdict,
                f"({fmt_bytes(window.rss_end)} - {fmt_bytes(baseline_rss)}) / {held:,}",
                value=per_conn / 1024,
                limit=32.0,
                passed=passed,
            )
        )
        rate = (count - xact_n) / ramp2 if ramp2 and count > xact_n else rate_first
        self.add(
            Row(
                "connect_rate",
                "connect rate during ramp",
                "report",
                f"{rate:,.0f} agents/s",
                "reported",
                f"auth + connection row + welcome + delta to the org; "
                f"{plan.max_pending} handshakes in flight",
                value=rate,
            )
        )
        log("closing the held agents")
        await self.lg.close(indices, concurrency=MASS_CLOSE_CONCURRENCY)
        await self.stop_extra_servers()
        await self.lg.route(indices, 0)

    async def _xact_window(self, agents: int) -> None:
        plan = self.plan
        stats_before = await self.lg.stats()
        t0 = time.time()
        xact0, rollback0 = await self.xact_counts()
        await asyncio.sleep(plan.xact_window)
        xact1, rollback1 = await self.xact_counts()
        t1 = time.time()
        stats_after = await self.lg.stats()
        transitions = await self.count_rows(
            "connected_at BETWEEN $1 AND $2 OR disconnected_at BETWEEN $1 AND $2",
            datetime.fromtimestamp(t0, UTC),
            datetime.fromtimestamp(t1, UTC),
        )
        intervals = (t1 - t0) / plan.flush_interval
        commits = (xact1 - xact0) / intervals
        rollbacks = (rollback1 - rollback0) / intervals
        steady = stats_after["totals"]["connects"] == stats_before["totals"]["connects"]
        self.details["xact"] = {
            "agents": agents,
            "window_seconds": t1 - t0,
            "commits": xact1 - xact0,
            "rollbacks": rollback1 - rollback0,
            "transitions": transitions,
            "steady": steady,
            "pongs": stats_after["totals"].get("pongs", 0) - stats_before["totals"].get("pongs", 0),
        }
        limit = 2.0 + transitions / intervals
        verdict, passed = judge(commits, limit, at_most=True)
        self.add(
            Row(
                "db_xact_per_flush",
                f"DB transactions per flush interval at {agents:,} agents",
                "<= 2 (+ transitions)",
                f"{commits:.2f} commits",
                verdict,
                f"pg_stat_database.xact_commit over {t1 - t0:.0f} s / {plan.flush_interval:g} s "
                f"flush; {transitions} transitions in window; plus {rollbacks:.2f} read-only "
                f"(rollback) transactions per interval",
                value=commits,
                limit=limit,
                passed=passed,
            )
        )

    async def fanout(self) -> None:
        plan = self.plan
        await self.start_server(plan.hb_interval, plan.hb_timeout)
        for size, org in zip(plan.fanout_sizes, self.fanout_orgs, strict=True):
            await self._fanout_one(size, org)

    async def _fanout_one(self, size: int, org: list[int]) -> None:
        plan = self.plan
        limit = 0.1 if size <= 1_000 else 1.0
        key = f"fanout_p99_{size}"
        metric = f"peer join fan-out p99, org of {size:,}"
        target = f"<= {limit * 1000:.0f} ms"
        joins = min(plan.fanout_joins, max(1, size // 10))
        if size + FD_RESERVE > self.fd_limit:
            self.add(_not_measured(key, metric, target, f"open-files limit {self.fd_limit}"))
            return
        others, joiners = org[:-joins], org[-joins:]
        started = time.time()
        await self.lg.connect(others)
        deadline = time.monotonic() + plan.fanout_budget
        ok = False
        while time.monotonic() < deadline:
            stats = await self.lg.stats()
            done = stats["established"]
            elapsed = time.time() - started
            if done >= len(others):
                ok = True
                break
            if elapsed > 30 and done > 0:
                eta = (len(others) - done) / (done / elapsed)
                if elapsed + eta > plan.fanout_budget * 1.2:
                    log(f"fan-out {size}: {done} connected in {elapsed:.0f} s, ETA {eta:.0f} s")
                    break
            await asyncio.sleep(1.0)
        setup = time.time() - started
        if not ok:
            stats = await self.lg.stats()
            done = stats["established"]
            rate = done / setup if setup else 0.0
            self.add(
                _not_measured(
                    key,
                    metric,
                    target,
                    f"setup too slow: {done:,} of {len(others):,} connected in {setup:.0f} s "
                    f"({rate:.1f}/s); each join loads the whole org roster and welcome",
                )
            )
            self.details[key] = {"setup_seconds": setup, "connected": done, "rate": rate}
            await self.lg.close(org, concurrency=MASS_CLOSE_CONCURRENCY)
            return
        log(f"fan-out {size}: {len(others)} connected in {setup:.1f} s")
        await asyncio.sleep(1.0)
        peer_ids = [self._peer_id(i) for i in joiners]
        await self.lg.watch(peer_ids)
        latencies: list[float] = []
        per_join: list[dict[str, float]] = []
        missing = 0
        recipients_total = 0
        for joined, (index, peer_id) in enumerate(zip(joiners, peer_ids, strict=True)):
            recipients = len(others) + joined  # earlier joiners are online too
            recipients_total += recipients
            await self.lg.connect([index], ramp=False)
            wait_until = time.monotonic() + 30
            arrivals: dict[int, float] = {}
            while time.monotonic() < wait_until:
                arrivals = await self.lg.arrivals(peer_id)
                if len(arrivals) >= recipients:
                    break
                await asyncio.sleep(0.05)
            session = (await self.lg.sessions([index]))[index]
            t0 = session["connect_started_at"]
            times = [t - t0 for t in arrivals.values()]
            latencies.extend(times)
            missing += max(0, recipients - len(times))
            if times:
                per_join.append(
                    {
                        "received": len(times),
                        "p50": percentile(times, 50),
                        "p99": percentile(times, 99),
                        "max": max(times),
                        "welcome": session["welcome_at"] - t0,
                    }
                )
            await asyncio.sleep(0.5)
        self.details[key] = {"setup_seconds": setup, "joins": per_join}
        p99 = percentile(latencies, 99) if latencies else None
        welcomes = [j["welcome"] for j in per_join]
        welcome_p50 = percentile(welcomes, 50) if welcomes else None
        verdict, passed = judge(p99, limit, at_most=True)
        if missing:
            verdict, passed = f"{verdict}; {missing} deliveries missing", False
        self.add(
            Row(
                key,
                metric,
                target,
                fmt_ms(p99),
                verdict,
                f"{joins} joins, {recipients_total:,} deliveries, from the joiner's connect to "
                f"each delta; p50 {fmt_ms(percentile(latencies, 50) if latencies else None)}, "
                f"max (every device) {fmt_ms(max(latencies) if latencies else None)}; "
                f"joiner welcomed after {fmt_ms(welcome_p50)} (median); "
                f"a join into a quiet org waits for no coalescing window; setup {setup:.0f} s",
                value=p99,
                limit=limit,
                passed=passed,
            )
        )
        await self.lg.close(org, concurrency=MASS_CLOSE_CONCURRENCY)

    def _peer_id(self, index: int) -> str:
        assert self.seeded is not None
        return self.seeded.devices[index].peer_id

    async def storm(self, sig_name: str) -> None:
        plan = self.plan
        sig = signal.Signals[sig_name]
        await self.start_server(plan.hb_interval, plan.hb_timeout)
        count = min(plan.storm_agents, self.fd_limit - FD_RESERVE)
        indices = self.hold_indices[:count]
        key = f"storm_{sig_name.lower()}"
        metric = f"reconnect storm after {sig_name}, {count:,} agents"
        ok, _, _ = await self.ramp(indices, f"storm set ({count})")
        if not ok:
            self.add(_not_measured(key, metric, "<= 30 s", "agents did not all connect"))
            await self.lg.close(indices, concurrency=MASS_CLOSE_CONCURRENCY)
            return
        await asyncio.sleep(2.0)
        assert self.server is not None
        old = self.server
        if sig == signal.SIGKILL:
            t_kill = await old.stop(sig)
            server = await self.restart_server(plan.storm_lease_ttl)
        else:
            t_kill = time.time()
            await old.stop(sig, grace=120)
            stopped = time.time()
            server = await self.restart_server(plan.storm_lease_ttl)
            self.details[f"{key}_shutdown_seconds"] = stopped - t_kill
        ready = server.ready_at - t_kill
        kill_at = datetime.fromtimestamp(t_kill, UTC)
        all_back = rows_clear = None
        deadline = time.monotonic() + max(120.0, count / 50)
        while time.monotonic() < deadline:
            now = time.time() - t_kill
            stats = await self.lg.stats(since=t_kill)
            if all_back is None and stats["welcomed_since"] >= count:
                all_back = stats["last_welcome_at"] - t_kill
            if rows_clear is None:
                left = await self.count_rows("status = 'connected' AND connected_at < $1", kill_at)
                if left == 0:
                    rows_clear = now
            if all_back is not None and rows_clear is not None:
                break
            await asyncio.sleep(0.25)
        window = server.window(server.ready_at, time.time())
        stats = await self.lg.stats(since=t_kill)
        total = None if all_back is None or rows_clear is None else max(all_back, rows_clear)
        self.details[key] = {
            "agents": count,
            "server_ready": ready,
            "all_reconnected": all_back,
            "old_rows_ended": rows_clear,
            "reconnected": stats["welcomed_since"],
            "close_codes": stats["close_codes"],
            "cpu_percent": window.cpu_percent,
        }
        verdict, passed = judge(total, 30.0, at_most=True)
        measured = fmt_s(total)
        if total is None:
            waited = time.time() - t_kill
            measured = f"> {waited:.0f} s"
            verdict, passed = "FAIL (did not settle)", False
            left = await self.count_rows("status = 'connected' AND connected_at < $1", kill_at)
            self.details[key]["old_rows_left"] = left
            measured += f" ({stats['welcomed_since']:,} back, {left:,} old rows open)"
        self.add(
            Row(
                key,
                metric,
                "<= 30 s",
                measured,
                verdict,
                f"server ready again {ready:.1f} s after the signal; all agents welcomed "
                f"{fmt_s(all_back)}; old 'connected' rows ended {fmt_s(rows_clear)}; "
                f"backoff full jitter 0.5..5 s; server CPU {window.cpu_percent:.0f}%",
                value=total,
                limit=30.0,
                passed=passed,
            )
        )
        await self.lg.close(indices, concurrency=MASS_CLOSE_CONCURRENCY)

    async def timeouts_and_closes(self) -> None:
        plan = self.plan
        await self.start_server(plan.short_interval, plan.short_timeout)
        silent = self.hold_indices[: plan.silent_agents]
        closing = self.hold_indices[plan.silent_agents : plan.silent_agents + plan.close_agents]
        everyone = silent + closing
        ok, _, _ = await self.ramp(everyone, f"short-heartbeat set ({len(everyone)})")
        if not ok:
            self.add(_not_measured("timeout_p99", "silent agent to 'timeout'"))
            self.add(_not_measured("close_p99", "clean close to 'disconnected'"))
            await self.lg.close(everyone)
            return
        await asyncio.sleep(2.5 * plan.short_interval)

        # Silent agents: last pong -> the row's disconnected_at.
        info = await self.lg.silence(silent)
        rows = await self._wait_rows(
            [info[i]["connection_id"] for i in silent], plan.short_timeout + 15
        )
        latencies = []
        statuses: dict[str, int] = {}
        for index in silent:
            agent = info[index]
            row = rows.get(agent["connection_id"])
            if row is None:
                continue
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
            if row["disconnected_at"] is None:
                continue
            since = agent["last_pong_at"] or agent["welcome_at"]
            latencies.append(row["disconnected_at"].timestamp() - since)
        limit = plan.short_timeout + 1.0
        p50 = percentile(latencies, 50) if latencies else None
        p99 = percentile(latencies, 99) if latencies else None
        all_timeout = statuses.get("timeout", 0) == len(silent)
        verdict, passed = judge(p99, limit, at_most=True)
        if not all_timeout:
            verdict, passed = f"{verdict}; statuses {statuses}", False
        self.details["timeout"] = {"statuses": statuses, "latencies": len(latencies)}
        self.add(
            Row(
                "timeout_p99",
                f"silent agent to row 'timeout', p99 ({len(silent)} agents)",
                f"<= timeout + 1 s = {limit:g} s",
                fmt_s(p99),
                verdict,
                f"heartbeat {plan.short_interval:g} s / timeout {plan.short_timeout:g} s for "
                f"this scenario; from the agent's last pong to disconnected_at; p50 {fmt_s(p50)}",
                value=p99,
                limit=limit,
                passed=passed,
            )
        )

        # Clean closes: close() called -> the row's disconnected_at.
        closed = await self.lg.close(closing, concurrency=CLOSE_CONCURRENCY)
        rows = await self._wait_rows([closed[i]["connection_id"] for i in closing], 15)
        close_latencies = []
        close_statuses: dict[str, int] = {}
        for index in closing:
            agent = closed[index]
            row = rows.get(agent["connection_id"])
            if row is None or row["disconnected_at"] is None or not agent["close_started_at"]:
                continue
            close_statuses[row["status"]] = close_statuses.get(row["status"], 0) + 1
            close_latencies.append(row["disconnected_at"].timestamp() - agent["close_started_at"])
        p99c = percentile(close_latencies, 99) if close_latencies else None
        p50c = percentile(close_latencies, 50) if close_latencies else None
        verdict, passed = judge(p99c, 0.2, at_most=True)
        if close_statuses.get("disconnected", 0) != len(closing):
            verdict, passed = f"{verdict}; statuses {close_statuses}", False
        self.add(
            Row(
                "close_p99",
                f"clean close to row 'disconnected', p99 ({len(closing)} agents)",
                "<= 200 ms",
                fmt_ms(p99c),
                verdict,
                f"from the agent calling close() to disconnected_at; p50 {fmt_ms(p50c)}; "
                f"{CLOSE_CONCURRENCY} closes in flight per load generator process",
                value=p99c,
                limit=0.2,
                passed=passed,
            )
        )
        await self.lg.close(everyone)

    async def _wait_rows(self, connection_ids: list[str], seconds: float) -> dict[str, Any]:
        """Poll until every row has ended (or ``seconds`` passed); rows by connection id."""
        ids = [cid for cid in connection_ids if cid]
        deadline = time.monotonic() + seconds
        connection = await self.db()
        try:
            while True:
                rows = await connection.fetch(
                    "SELECT connection_id::text AS cid, status, disconnected_at "
                    "FROM connection_status WHERE connection_id::text = ANY($1::text[])",
                    ids,
                )
                found = {row["cid"]: row for row in rows}
                ended = sum(1 for row in rows if row["status"] != "connected")
                if ended >= len(ids) or time.monotonic() >= deadline:
                    return found
                await asyncio.sleep(0.1)
        finally:
            await connection.close()

    # -------------------------------------------------------------- all

    async def run_all(self, only: set[str] | None = None) -> None:
        plan = self.plan
        wanted = only or set(SCENARIOS)
        if "throughput" in wanted:
            await self.throughput()
        if "hold" in wanted:
            await self.hold()
        if "fanout" in wanted:
            await self.fanout()
        if "fanout_replicas" in wanted:
            await replica_fanout.run(self)
        if "timeouts" in wanted:
            await self.timeouts_and_closes()
        if "storm" in wanted:
            for sig_name in plan.storm_signals:
                await self.storm(sig_name)


def other_cpu(loadgen_pids: list[int]) -> dict[str, dict[int, float]]:
    """CPU seconds so far of each load generator process and each PostgreSQL process."""
    postgres = []
    for status in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if status.read_text().strip() == "postgres":
                postgres.append(int(status.parent.name))
    return {"loadgen": _cpu_of(loadgen_pids), "postgresql": _cpu_of(postgres)}


def _cpu_of(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            seconds[pid] = cpu_seconds(pid)
    return seconds


def cpu_percent_between(before: dict[int, float], after: dict[int, float], elapsed: float) -> float:
    """CPU % of a set of processes between two readings; a process that started in between
    counts whole, one that exited in between is missed (short-lived backends)."""
    used = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
    return used / elapsed * 100 if elapsed > 0 else 0.0


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


def _not_measured(key: str, metric: str, target: str = "", why: str = "") -> Row:
    return Row(key, metric, target, "n/a", "not measured", why)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    if path:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wiremesh-bench-") as tmp:
        yield Path(tmp)


async def pool_size_for(replicas: int, reserve: int = 10) -> int:
    """The largest pool (at most the default 20) whose pool plus overflow, times the
    replicas, leaves ``reserve`` of PostgreSQL's connections for everyone else."""
    connection = await asyncpg.connect(asyncpg_dsn(admin_url()))
    try:
        limit = int(await connection.fetchval("SHOW max_connections"))
    finally:
        await connection.close()
    return max(2, min(20, (limit - reserve) // (2 * replicas)))


async def _pg_version() -> str:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url()))
    try:
        version = await connection.fetchval("SHOW server_version")
        return f"PostgreSQL {str(version).split()[0]}"
    finally:
        await connection.close()


async def run(
    plan: Plan, workdir: Path, *, keep_db: bool = False, only: set[str] | None = None
) -> dict[str, Any]:
    facts = machine_facts(await _pg_version())
    bench = Bench(plan, workdir, keep_db=keep_db)
    started = time.time()
    try:
        await bench.setup()
        await bench.run_all(only)
    finally:
        await bench.teardown()
    facts["loadavg_end"] = _loadavg()
    table = render_table(bench.rows, facts, plan)
    return {
        "machine": facts,
        "plan": asdict(plan),
        "started_at": started,
        "seconds": time.time() - started,
        "metrics": {row.key: asdict(row) for row in bench.rows},
        "details": bench.details,
        "table": table,
        "workdir": str(workdir),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--agents", type=int, default=None, help="agents to hold (50000)")
    parser.add_argument("--quick", action="store_true", help="small and fast (300 agents)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--hold", type=float, help="seconds to hold (default 2 timeouts + 15)")
    parser.add_argument("--org-size", type=int)
    parser.add_argument("--xact-agents", type=int)
    parser.add_argument("--xact-window", type=float)
    parser.add_argument("--storm-agents", type=int)
    parser.add_argument("--storm-signals", help="comma list, e.g. SIGKILL,SIGTERM")
    parser.add_argument("--fanout", help="comma list of org sizes, e.g. 1000,10000")
    parser.add_argument("--fanout-budget", type=float, help="seconds to connect a fan-out org")
    parser.add_argument(
        "--replica-fanout", type=int, help="online agents of the org spread over replicas (1000)"
    )
    parser.add_argument(
        "--replica-fanout-replicas", type=int, help="replicas to spread it over (3)"
    )
    parser.add_argument(
        "--replica-fanout-joins", type=int, help="timed joins per setting (100, 6 with --quick)"
    )
    parser.add_argument("--throughput-seconds", type=float)
    parser.add_argument("--processes", type=int, help="load generator processes")
    parser.add_argument(
        "--replicas", type=int, help="server replicas for the hold (default: what fds need)"
    )
    parser.add_argument("--max-pending", type=int, help="handshakes in flight during ramps (32)")
    parser.add_argument("--ramp-timeout", type=float, help="seconds to connect a ramp")
    parser.add_argument("--parser", choices=("light", "session"))
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the servers (hold: ramp and hold; fanout_replicas: the joins)",
    )
    parser.add_argument(
        "--server-prelude", help="Python run in the server before it starts (A/B a tweak)"
    )
    parser.add_argument("--workdir", help="keep logs here (default: a temporary directory)")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--only", help=f"comma list of scenarios: {','.join(SCENARIOS)}")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    plan = Plan.quick(args.agents or 300) if args.quick else Plan()
    if args.agents and not args.quick:
        plan.agents = args.agents
    overrides = {
        "hold_seconds": args.hold,
        "org_size": args.org_size,
        "xact_agents": args.xact_agents,
        "xact_window": args.xact_window,
        "storm_agents": args.storm_agents,
        "fanout_budget": args.fanout_budget,
        "replica_fanout_size": args.replica_fanout,
        "replica_fanout_replicas": args.replica_fanout_replicas,
        "replica_fanout_joins": args.replica_fanout_joins,
        "throughput_seconds": args.throughput_seconds,
        "processes": args.processes,
        "replicas": args.replicas,
        "max_pending": args.max_pending,
        "ramp_timeout": args.ramp_timeout,
        "parser": args.parser,
        "server_prelude": args.server_prelude,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(plan, name, value)
    if args.storm_signals:
        plan.storm_signals = [s.strip().upper() for s in args.storm_signals.split(",") if s]
    if args.fanout:
        plan.fanout_sizes = [int(s) for s in args.fanout.split(",") if s.strip()]
    plan.profile = args.profile
    return plan.resolved()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = plan_from(args)
    raise_nofile_limit()
    with _workdir(args.workdir) as workdir:
        only = {s.strip() for s in args.only.split(",")} if args.only else None
        if only and not only <= set(SCENARIOS):
            raise SystemExit(f"--only takes {', '.join(SCENARIOS)}")
        result = asyncio.run(run(plan, workdir, keep_db=args.keep_db, only=only))
    print(result["table"])
    profile_top = result["details"].get("profile")
    if profile_top:
        print("\nServer profile (py-spy, ramp + hold), top frames by own samples:")
        for frame, share in profile_top["self"]:
            print(f"  {share:5.1f}%  {frame}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
