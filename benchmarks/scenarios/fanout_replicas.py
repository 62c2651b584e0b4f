"""Peer-join fan-out across replicas: one org's agents spread evenly over several servers.

Replicas share one truth: a join on replica A is an event that every replica reads (woken
by PostgreSQL NOTIFY) and turns into peer deltas for the agents it holds. This scenario
times, for each join of a fresh device, how long until *every* other online agent of the
org, whichever replica holds it, has received the ``peers_delta`` upsert with
``online=true``; then p50/p99 over the joins. It times the same joins with the whole org
on one replica first, in the same run and with the same org, so the price of the
cross-replica path is the ratio of the two figures.

What keeps it honest: one clock (``time.time()`` on this host) for the joiner's connect
and for every receive timestamp, taken by the load generator as it parses the frame;
setup (connecting the org, moving agents to other replicas) is outside every timing; each
joiner leaves after its join and the next one waits for a quiet org, so every join meets
the same N agents online and no coalescing window delays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.cluster import Bench
from benchmarks.report import Row, fmt_ms, judge, log, not_measured
from benchmarks.scenarios.join_timing import JoinTiming, Setting
from benchmarks.server import ServerProcess, cpu_seconds, profile, stop_profile

TARGET_SECONDS = 0.15
"""Join to every agent of an org of 1,000 spread over three replicas (the issue's target)."""
DELIVERY_TIMEOUT = 30.0
"""A join whose delta has not reached every agent by then counts the rest as missing."""
QUIET_GAP = 0.6
"""Pause after each join and each leave: longer than the widest coalescing window (0.5 s),
so the next join enters a quiet org and its delta goes out at once."""
POLL_INTERVAL = 0.05


def spread_evenly(indices: list[int], replicas: int) -> dict[int, int]:
    """Agent -> replica, round robin, as a balancer without org affinity would place them."""
    return {index: position % replicas for position, index in enumerate(indices)}


async def time_joins(
    bench: Bench,
    joiners: list[int],
    replica_of: dict[int, int],
    replicas: int,
    servers: list[ServerProcess],
) -> Setting:
    """Join each fresh device in turn (on replica ``n % replicas``), wait until every agent
    in ``replica_of`` has it online, note the timings, and let it leave again."""
    assert bench.seeded is not None
    lg = bench.lg
    peer_ids = [bench.seeded.devices[index].peer_id for index in joiners]
    await lg.watch(peer_ids)
    recipients = set(replica_of)
    timings: list[JoinTiming] = []
    profilers = await _start_profilers(bench, servers, f"{replicas}-replica")
    loadgen_cpu = _cpu_of(lg.pids)
    load_before = machine_load()
    started = time.time()
    for number, (index, peer_id) in enumerate(zip(joiners, peer_ids, strict=True)):
        replica = number % replicas
        await lg.route([index], replica)
        await lg.connect([index], ramp=False)
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            arrivals = await lg.arrivals(peer_id)
            if recipients.issubset(arrivals) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
        session = (await lg.sessions([index]))[index]
        connect_started = session["connect_started_at"]
        delays: dict[int, list[float]] = {}
        for agent, received_at in arrivals.items():
            if agent in recipients:
                delays.setdefault(replica_of[agent], []).append(received_at - connect_started)
        welcomed = session["welcome_at"]
        timings.append(
            JoinTiming(
                joiner_replica=replica,
                recipients=len(recipients),
                welcome=welcomed - connect_started if welcomed >= connect_started else None,
                delays=delays,
            )
        )
        await asyncio.sleep(QUIET_GAP)
        await lg.close([index])
        await asyncio.sleep(QUIET_GAP)
    ended = time.time()
    cpu = sum(server.window(started, ended).cpu_percent for server in servers)
    loadgen = (_cpu_of(lg.pids) - loadgen_cpu) / (ended - started) * 100
    setting = Setting(replicas, timings, 0.0, cpu, loadgen)
    setting.profiles = _stop_profilers(profilers)
    setting.machine_load = {
        **{f"{name}_before": value for name, value in load_before.items()},
        **{f"{name}_after": value for name, value in machine_load().items()},
    }
    return setting


def machine_load() -> dict[str, str]:
    """1/5/15-minute load average, and the share of time runnable tasks waited for a CPU
    over the last 10/60/300 s (Linux pressure stall information), where available."""
    load: dict[str, str] = {}
    with contextlib.suppress(OSError):
        load["load_average"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with contextlib.suppress(OSError, IndexError):
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()[1:4]
        load["cpu_pressure"] = " ".join(part.split("=")[1] + "%" for part in some)
    return load


def _cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def _start_profilers(
    bench: Bench, servers: list[ServerProcess], label: str
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    """With ``--profile``: py-spy on every server while the joins run (active samples only)."""
    if not bench.plan.profile:
        return {}
    profilers = {}
    for number, server in enumerate(servers):
        path = bench.workdir / f"py-spy-fanout-{label}-server-{number}.txt"
        profiler = await profile(server.pid, path, rate=200)
        if profiler is not None:
            profilers[f"replica {number}"] = (profiler, path)
    return profilers


def _stop_profilers(
    profilers: dict[str, tuple[subprocess.Popen[bytes], Path]],
) -> dict[str, Any]:
    frames: dict[str, Any] = {}
    for name, (profiler, path) in profilers.items():
        top = stop_profile(profiler, path, count=25)
        if top is not None:
            frames[name] = {"path": str(path), **top}
    return frames


async def sessions_per_server(bench: Bench, org_id: int) -> dict[str, int]:
    """Live ``connection_status`` rows of the org by replica: where the agents really are."""
    connection = await bench.db()
    try:
        rows = await connection.fetch(
            "SELECT server_id, count(*) AS sessions FROM connection_status "
            "WHERE org_id = $1 AND status = 'connected' GROUP BY server_id ORDER BY server_id",
            org_id,
        )
    finally:
        await connection.close()
    return {str(row["server_id"]): int(row["sessions"]) for row in rows}


async def run(bench: Bench) -> None:
    """The scenario: the org on one replica, timed joins; spread it, timed joins again."""
    plan = bench.plan
    size, replicas, joins = (
        plan.replica_fanout_size,
        plan.replica_fanout_replicas,
        plan.replica_fanout_joins,
    )
    org = bench.replica_fanout_org
    others = org[:size]
    alone_joiners, spread_joiners = org[size : size + joins], org[size + joins :]
    keys = (f"fanout_all_p99_{size}_1_replica", f"fanout_all_p99_{size}_{replicas}_replicas")
    metrics = (
        f"peer join fan-out to every agent p99, org of {size:,} on 1 replica",
        f"peer join fan-out to every agent p99, org of {size:,} on {replicas} replicas",
    )
    if size + 1 > bench.agents_per_server:
        why = f"{size:,} agents do not fit one server (open-files limit {bench.fd_limit})"
        bench.add(not_measured(keys[0], metrics[0], "baseline", why))
        bench.add(not_measured(keys[1], metrics[1], _target(), why))
        return
    assert bench.seeded is not None
    org_id = bench.seeded.devices[org[0]].org_id
    pool_size = bench.replica_fanout_pool_size
    server = await bench.start_server(plan.hb_interval, plan.hb_timeout, pool_size=pool_size)
    await bench.lg.route(org, 0)
    try:
        ok, setup, _ = await bench.ramp(others, f"replica fan-out: {size} agents on replica 0")
        if not ok:
            why = f"the org's {size:,} agents did not all connect"
            bench.add(not_measured(keys[0], metrics[0], "baseline", why))
            bench.add(not_measured(keys[1], metrics[1], _target(), why))
            return
        await asyncio.sleep(1.0)
        log(f"replica fan-out: {joins} timed joins, all on replica 0")
        alone = await time_joins(bench, alone_joiners, dict.fromkeys(others, 0), 1, [server])
        alone.setup_seconds = setup

        servers = [
            server,
            *await bench.start_extra_replicas(
                plan.hb_interval, plan.hb_timeout, replicas=replicas, pool_size=pool_size
            ),
        ]
        replica_of = spread_evenly(others, replicas)
        movers = [index for index in others if replica_of[index] != 0]
        moving_started = time.time()
        await bench.close_agents(movers)
        for replica in range(1, replicas):
            await bench.lg.route([i for i in movers if replica_of[i] == replica], replica)
        ok, _, _ = await bench.ramp(movers, f"replica fan-out: {len(movers)} agents moving")
        moving_seconds = time.time() - moving_started
        placement = await sessions_per_server(bench, org_id)
        log(f"replica fan-out: sessions per replica {placement}")
        if not ok:
            why = f"moving {len(movers):,} agents to replicas 1..{replicas - 1} did not finish"
            _add_alone_row(bench, keys[0], metrics[0], alone, size)
            bench.add(not_measured(keys[1], metrics[1], _target(), why))
            return
        await asyncio.sleep(1.0)
        log(f"replica fan-out: {joins} timed joins on replicas 0..{replicas - 1} in turn")
        spread = await time_joins(bench, spread_joiners, replica_of, replicas, servers)
        spread.setup_seconds = setup + moving_seconds
        bench.details["fanout_replicas"] = {
            "org_size": size,
            "replicas": replicas,
            "joins_per_setting": joins,
            "pool_size_per_replica": pool_size,
            "sessions_per_server": placement,
            "one_replica": alone.summary(),
            "spread": spread.summary(),
        }
        _add_alone_row(bench, keys[0], metrics[0], alone, size)
        _add_spread_row(bench, keys[1], metrics[1], spread, alone, size, placement)
    finally:
        await bench.close_agents(org)
        await bench.stop_extra_servers()
        await bench.lg.route(org, 0)


def _target() -> str:
    return f"<= {TARGET_SECONDS * 1000:.0f} ms"


def _measured(setting: Setting) -> str:
    return f"{fmt_ms(setting.completion(99))} (p50 {fmt_ms(setting.completion(50))})"


def _method(setting: Setting, size: int) -> str:
    joins = len(setting.joins)
    slowest = " = the slowest" if joins < 100 else ""
    return (
        f"p99 over {joins} joins{slowest}; each: a fresh device's connect to the last of "
        f"{size:,} online agents' receive timestamps (load generator, one clock); "
        f"per delivery p99 {fmt_ms(setting.delivery(99))}; joiner welcomed after "
        f"{fmt_ms(setting.welcome(50))}, first agent on its replica had it after "
        f"{fmt_ms(setting.first_on_joiners_replica(50))} (medians); CPU during joins: servers "
        f"{setting.server_cpu_percent:.0f}%, load generator {setting.loadgen_cpu_percent:.0f}%; "
        f"machine load average {_first(setting.machine_load, 'load_average_before')} -> "
        f"{_first(setting.machine_load, 'load_average_after')}; "
        f"setup excluded ({setting.setup_seconds:.0f} s)"
    )


def _first(load: dict[str, str], name: str) -> str:
    """The first figure of a load reading (the 1-minute average)."""
    return load.get(name, "?").split(" ")[0]


def _add_alone_row(bench: Bench, key: str, metric: str, alone: Setting, size: int) -> None:
    verdict = "baseline"
    if alone.missing:
        verdict += f"; {alone.missing} deliveries missing"
    bench.add(
        Row(
            key,
            metric,
            "baseline",
            _measured(alone),
            verdict,
            f"same run, same org: the baseline of the next row; {_method(alone, size)}",
            value=alone.completion(99),
            passed=None if not alone.missing else False,
        )
    )


def _add_spread_row(
    bench: Bench,
    key: str,
    metric: str,
    spread: Setting,
    alone: Setting,
    size: int,
    placement: dict[str, int],
) -> None:
    p99 = spread.completion(99)
    verdict, passed = judge(p99, TARGET_SECONDS, at_most=True)
    baseline = alone.completion(99)
    if p99 is not None and baseline:
        verdict += f"; {p99 / baseline:.2f}x one replica"
    if spread.missing:
        verdict, passed = f"{verdict}; {spread.missing} deliveries missing", False
    agents = ", ".join(str(count) for count in placement.values())
    bench.add(
        Row(
            key,
            metric,
            _target(),
            _measured(spread),
            verdict,
            f"agents per replica {agents}; joiners on replicas 0..{spread.replicas - 1} in "
            f"turn; last on the joiner's replica p99 "
            f"{fmt_ms(spread.last_on_joiners_replica(99))}, on the others p99 "
            f"{fmt_ms(spread.last_on_other_replicas(99))}; {_method(spread, size)}",
            value=p99,
            limit=TARGET_SECONDS,
            passed=passed,
            extra={"one_replica_p99": baseline},
        )
    )
