"""The hold: ramp to N agents at the normal heartbeat and hold them for two timeouts or more.

On the way, with replica 0's agents alone connected, the database's transaction rate is
measured in a window without connects or disconnects; then the other replicas (as many as
the open-files limit needs, each org on one of them) start and the ramp goes on to N. The
rows: agents held without timeouts, server CPU, RSS, event-loop lag, memory per connection,
the connect rate, and transactions per flush interval.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from benchmarks.cluster import Bench
from benchmarks.plan import FD_RESERVE, MASS_CLOSE_CONCURRENCY, PG_STATS_SETTLE
from benchmarks.report import Row, fmt_bytes, fmt_ms, judge, log, not_measured
from benchmarks.server import (
    ServerProcess,
    Window,
    combined_window,
    cpu_of,
    cpu_percent_between,
    other_cpu,
    profile,
    seconds_between,
    stop_profile,
)


@dataclass
class RampCost:
    """CPU seconds the servers and the load generator spent on the main ramp's connects."""

    connects: int
    deltas: int
    """``peers_delta`` messages the agents received meanwhile (each connect sends one to
    every online member of its org)."""
    server_seconds: float
    loadgen_seconds: float

    def per_connect_ms(self, seconds: float) -> float:
        return seconds / self.connects * 1000 if self.connects else math.nan


@dataclass
class Hold:
    """One hold run: who takes part, then what each step measured."""

    target: int
    count: int
    replicas: int
    indices: list[int]
    """Replica 0's agents first: the transaction rate is measured on it alone."""
    xact_n: int
    servers: list[ServerProcess]
    baseline_rss: int
    first_ok: bool = False
    first_ramp: float = 0.0
    rest_ok: bool = False
    rest_ramp: float = 0.0
    ramp_stats: dict[str, Any] = field(default_factory=dict)
    ramp_window: Window | None = None
    hold_start: float = 0.0
    hold_end: float = 0.0
    window: Window | None = None
    others: dict[str, float] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    timeouts: int = 0
    connected_rows: int = 0
    ramp_cpu: RampCost | None = None

    @property
    def capped(self) -> bool:
        return self.count < self.target

    @property
    def first_rate(self) -> float:
        return self.xact_n / self.first_ramp if self.first_ramp else 0.0

    @property
    def reconnects(self) -> int:
        connects: int = self.after["totals"]["connects"] - self.ramp_stats["totals"]["connects"]
        return connects

    @property
    def held(self) -> int:
        established: int = self.after["established"]
        return established


async def run(bench: Bench) -> None:
    hold = await _prepare(bench)
    await _measure_transactions(bench, hold)
    await _start_other_replicas(bench, hold)
    await _ramp_and_hold(bench, hold)
    _record_details(bench, hold)
    _report_held(bench, hold)
    _report_resources(bench, hold)
    _report_connect_cost(bench, hold)
    log("closing the held agents")
    await bench.lg.close(hold.indices, concurrency=MASS_CLOSE_CONCURRENCY)
    await bench.stop_extra_servers()
    await bench.lg.route(hold.indices, 0)


async def _prepare(bench: Bench) -> Hold:
    """Start replica 0, note its empty RSS, choose the agents and route them by org."""
    plan = bench.plan
    server = await bench.start_server(plan.hb_interval, plan.hb_timeout)
    await asyncio.sleep(2.0)
    baseline_rss = server.sample_now().rss
    replicas = bench.replica_count
    capacity = (bench.fd_limit - FD_RESERVE) * replicas
    count = min(plan.agents, capacity)
    if count < plan.agents:
        log(
            f"only {count} of {plan.agents} agents: {replicas} replicas with an open-files "
            f"limit of {bench.fd_limit} each (hard; raising it needs CAP_SYS_RESOURCE)"
        )
    indices = sorted(
        bench.hold_indices[:count], key=lambda index: bench.org_of.get(index, 0) % replicas != 0
    )
    await bench.route_by_org(indices, replicas)
    on_first = sum(1 for index in indices if bench.org_of.get(index, 0) % replicas == 0)
    return Hold(
        target=plan.agents,
        count=count,
        replicas=replicas,
        indices=indices,
        xact_n=min(plan.xact_agents, on_first),
        servers=[server],
        baseline_rss=baseline_rss,
    )


async def _measure_transactions(bench: Bench, hold: Hold) -> None:
    """Ramp to ``xact_n`` agents on replica 0, let the ramp's counts settle, count."""
    ok, hold.first_ramp, _ = await bench.ramp(hold.indices[: hold.xact_n], f"ramp to {hold.xact_n}")
    hold.first_ok = ok
    if ok:
        await asyncio.sleep(max(PG_STATS_SETTLE, 2 * bench.plan.flush_interval))
        await _xact_window(bench, hold.xact_n)
    else:
        bench.add(not_measured("db_xact_per_flush", "DB transactions per flush interval"))


async def _start_other_replicas(bench: Bench, hold: Hold) -> None:
    if hold.replicas <= 1:
        return
    plan = bench.plan
    extras = await bench.start_extra_replicas(plan.hb_interval, plan.hb_timeout)
    await asyncio.sleep(2.0)
    hold.baseline_rss += sum(extra.sample_now().rss for extra in extras)
    hold.servers += extras


async def _ramp_and_hold(bench: Bench, hold: Hold) -> None:
    """Ramp to the full count, hold, and sample the servers, PostgreSQL and the load
    generator over the hold (py-spy on replica 0 with ``--profile``)."""
    plan = bench.plan
    profile_path = bench.workdir / "py-spy-hold.txt"
    profiler = await profile(hold.servers[0].pid, profile_path) if plan.profile else None
    ramp_started = time.time()
    totals_before = (await bench.lg.stats())["totals"]
    server_pids = [server.pid for server in hold.servers]
    servers_before, loadgen_before = cpu_of(server_pids), cpu_of(bench.lg.pids)
    hold.rest_ok, hold.rest_ramp, hold.ramp_stats = await bench.ramp(
        hold.indices[hold.xact_n :], f"ramp to {hold.count}"
    )
    servers_after, loadgen_after = cpu_of(server_pids), cpu_of(bench.lg.pids)
    hold.ramp_cpu = RampCost(
        connects=hold.ramp_stats["totals"]["connects"] - totals_before["connects"],
        deltas=hold.ramp_stats["totals"]["deltas"] - totals_before["deltas"],
        server_seconds=seconds_between(servers_before, servers_after),
        loadgen_seconds=seconds_between(loadgen_before, loadgen_after),
    )
    hold.ramp_window = combined_window(hold.servers, ramp_started, time.time())
    hold.hold_start = time.time()
    others_before = other_cpu(bench.lg.pids)
    log(f"holding {hold.ramp_stats['established']} agents for {plan.hold_seconds:g} s")
    await asyncio.sleep(plan.hold_seconds)
    hold.hold_end = time.time()
    others_after = other_cpu(bench.lg.pids)
    hold.others = {
        name: cpu_percent_between(
            others_before[name], others_after[name], hold.hold_end - hold.hold_start
        )
        for name in others_after
    }
    hold.window = combined_window(hold.servers, hold.hold_start, hold.hold_end)
    hold.after = await bench.lg.stats()
    hold.timeouts = await bench.count_rows("status = 'timeout'")
    hold.connected_rows = await bench.count_rows("status = 'connected'")
    if profiler is not None:
        frames = stop_profile(profiler, profile_path)
        if frames is not None:
            bench.details["profile"] = frames
            bench.details["profile_path"] = str(profile_path)


def _record_details(bench: Bench, hold: Hold) -> None:
    assert hold.window is not None
    assert hold.ramp_window is not None
    bench.details["hold"] = {
        "target": hold.target,
        "attempted": hold.count,
        "capped_by_fd_limit": hold.capped,
        "established_after_ramp": hold.ramp_stats["established"],
        "established_after_hold": hold.held,
        "reconnects_during_hold": hold.reconnects,
        "timeout_rows": hold.timeouts,
        "connected_rows": hold.connected_rows,
        "close_codes": hold.after["close_codes"],
        "connect_errors": hold.after["connect_errors"],
        "ramp_seconds": hold.first_ramp + hold.rest_ramp,
        "connect_rate_first": hold.first_rate,
        "pongs_total": hold.after["totals"]["pongs"],
        "hold_window": asdict(hold.window),
        "ramp_window": asdict(hold.ramp_window),
        "baseline_rss": hold.baseline_rss,
        "pool_size_per_replica": bench.pool_size,
        "other_cpu_percent": hold.others,
        "replicas": [{"pid": s.pid, "port": s.port} for s in hold.servers],
        "stalls": [
            (round(at - hold.hold_start, 2), round(rtt, 3))
            for s in hold.servers
            for at, rtt in (s.probe.samples if s.probe else [])
            if hold.hold_start <= at <= hold.hold_end and rtt >= 0.25
        ],
    }


def _report_held(bench: Bench, hold: Hold) -> None:
    """Agents held, and timeout rows while holding."""
    plan, window, held, target = bench.plan, hold.window, hold.held, hold.target
    assert window is not None
    fine = (
        held == hold.count
        and hold.timeouts == 0
        and hold.reconnects == 0
        and hold.first_ok
        and hold.rest_ok
    )
    spread = (
        f"{len(hold.servers)} server replicas on one PostgreSQL, each org on one replica; "
        if len(hold.servers) > 1
        else ""
    )
    notes = (
        f"{spread}orgs of {plan.org_size}; held {plan.hold_seconds:g} s; "
        f"{hold.timeouts} timeout rows, {hold.reconnects} reconnects; "
        f"CPU {window.cpu_percent:.0f}%, RSS {fmt_bytes(window.rss_end)}, "
        f"lag p99 {fmt_ms(window.lag_p99)}"
    )
    if hold.capped:
        notes += f"; capped at {hold.count} by the open-files limit {bench.fd_limit}"
    verdict, passed = judge(float(held) if fine else 0.0, float(target), at_most=False)
    if not fine:
        verdict = f"{held / target:.2f}x target, FAIL"
    bench.add(
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
    bench.add(
        Row(
            "hold_timeouts",
            "timeout rows while holding",
            "0",
            str(hold.timeouts),
            "pass" if hold.timeouts == 0 else "FAIL",
            f"over {plan.hold_seconds:g} s "
            f"= {plan.hold_seconds / plan.hb_timeout:.1f} heartbeat timeouts",
            value=float(hold.timeouts),
            limit=0.0,
            passed=hold.timeouts == 0,
        )
    )


def _report_resources(bench: Bench, hold: Hold) -> None:
    """Server CPU, RSS, loop lag and memory per connection while holding; the connect rate."""
    plan, window, ramp_window, held = bench.plan, hold.window, hold.ramp_window, hold.held
    assert window is not None
    assert ramp_window is not None
    servers, baseline_rss = hold.servers, hold.baseline_rss
    bench.add(
        Row(
            "server_cpu_hold",
            "server CPU while holding",
            "report",
            f"{window.cpu_percent:.1f}%",
            "reported",
            f"max 5 s window {window.cpu_percent_max_5s:.0f}%; during ramp "
            f"{ramp_window.cpu_percent:.0f}% (100% = one core); meanwhile load generator "
            f"{hold.others['loadgen']:.0f}%, PostgreSQL {hold.others['postgresql']:.0f}%",
            value=window.cpu_percent,
        )
    )
    bench.add(
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
    bench.add(
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
    bench.add(
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
    rest = hold.count - hold.xact_n
    rate = rest / hold.rest_ramp if hold.rest_ramp and rest > 0 else hold.first_rate
    bench.add(
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


async def _xact_window(bench: Bench, agents: int) -> None:
    plan = bench.plan
    stats_before = await bench.lg.stats()
    t0 = time.time()
    xact0, rollback0 = await bench.xact_counts()
    await asyncio.sleep(plan.xact_window)
    xact1, rollback1 = await bench.xact_counts()
    t1 = time.time()
    stats_after = await bench.lg.stats()
    transitions = await bench.count_rows(
        "connected_at BETWEEN $1 AND $2 OR disconnected_at BETWEEN $1 AND $2",
        datetime.fromtimestamp(t0, UTC),
        datetime.fromtimestamp(t1, UTC),
    )
    intervals = (t1 - t0) / plan.flush_interval
    commits = (xact1 - xact0) / intervals
    rollbacks = (rollback1 - rollback0) / intervals
    steady = stats_after["totals"]["connects"] == stats_before["totals"]["connects"]
    bench.details["xact"] = {
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
    bench.add(
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


def _report_connect_cost(bench: Bench, hold: Hold) -> None:
    """CPU per connect during the main ramp: the server's, and the load generator's own
    (which must stay well under the server's, or it hides the server's figures)."""
    cost = hold.ramp_cpu
    if cost is None or cost.connects == 0:
        bench.add(not_measured("server_cpu_per_connect", "server CPU per connect"))
        bench.add(not_measured("loadgen_cpu_per_connect", "load generator CPU per connect"))
        return
    for metric, label, seconds, limit in (
        ("server_cpu_per_connect", "server CPU per connect", cost.server_seconds, 2.0),
        ("loadgen_cpu_per_connect", "load generator CPU per connect", cost.loadgen_seconds, 1.0),
    ):
        per_connect = cost.per_connect_ms(seconds)
        verdict, passed = judge(per_connect, limit, at_most=True)
        bench.add(
            Row(
                metric,
                f"{label} (CPU seconds / connects, during the ramp)",
                f"<= {limit:g} ms",
                f"{per_connect:.2f} ms",
                verdict,
                f"{seconds:.1f} CPU s over {cost.connects:,} connects "
                f"({cost.deltas / cost.connects:.0f} peer deltas received per connect)",
                value=per_connect,
                limit=limit,
                passed=passed,
            )
        )
