"""Reconnect storm: every agent connected, the server killed (or stopped) and restarted;
how long until every agent is back and the old rows have ended."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime

from benchmarks.cluster import Bench
from benchmarks.plan import FD_RESERVE, MASS_CLOSE_CONCURRENCY
from benchmarks.report import Row, fmt_s, judge, not_measured


async def run(bench: Bench, sig_name: str) -> None:
    plan = bench.plan
    sig = signal.Signals[sig_name]
    await bench.start_server(plan.hb_interval, plan.hb_timeout)
    count = min(plan.storm_agents, bench.fd_limit - FD_RESERVE)
    indices = bench.hold_indices[:count]
    key = f"storm_{sig_name.lower()}"
    metric = f"reconnect storm after {sig_name}, {count:,} agents"
    ok, _, _ = await bench.ramp(indices, f"storm set ({count})")
    if not ok:
        bench.add(not_measured(key, metric, "<= 30 s", "agents did not all connect"))
        await bench.lg.close(indices, concurrency=MASS_CLOSE_CONCURRENCY)
        return
    await asyncio.sleep(2.0)
    assert bench.server is not None
    old = bench.server
    if sig == signal.SIGKILL:
        t_kill = await old.stop(sig)
        server = await bench.restart_server(plan.storm_lease_ttl)
    else:
        t_kill = time.time()
        await old.stop(sig, grace=120)
        stopped = time.time()
        server = await bench.restart_server(plan.storm_lease_ttl)
        bench.details[f"{key}_shutdown_seconds"] = stopped - t_kill
    ready = server.ready_at - t_kill
    kill_at = datetime.fromtimestamp(t_kill, UTC)
    all_back = rows_clear = None
    deadline = time.monotonic() + max(120.0, count / 50)
    while time.monotonic() < deadline:
        now = time.time() - t_kill
        stats = await bench.lg.stats(since=t_kill)
        if all_back is None and stats["welcomed_since"] >= count:
            all_back = stats["last_welcome_at"] - t_kill
        if rows_clear is None:
            left = await bench.count_rows("status = 'connected' AND connected_at < $1", kill_at)
            if left == 0:
                rows_clear = now
        if all_back is not None and rows_clear is not None:
            break
        await asyncio.sleep(0.25)
    window = server.window(server.ready_at, time.time())
    stats = await bench.lg.stats(since=t_kill)
    total = None if all_back is None or rows_clear is None else max(all_back, rows_clear)
    bench.details[key] = {
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
        left = await bench.count_rows("status = 'connected' AND connected_at < $1", kill_at)
        bench.details[key]["old_rows_left"] = left
        measured += f" ({stats['welcomed_since']:,} back, {left:,} old rows open)"
    bench.add(
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
    await bench.lg.close(indices, concurrency=MASS_CLOSE_CONCURRENCY)
