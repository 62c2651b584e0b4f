"""Peer-join fan-out in one org on one server: devices join one at a time, each timed from
its connect until every other online agent of the org has the delta with it online."""

from __future__ import annotations

import asyncio
import time

from benchmarks.cluster import Bench
from benchmarks.plan import FD_RESERVE, MASS_CLOSE_CONCURRENCY
from benchmarks.report import Row, fmt_ms, judge, log, not_measured
from benchmarks.server import percentile


async def run(bench: Bench) -> None:
    plan = bench.plan
    await bench.start_server(plan.hb_interval, plan.hb_timeout)
    for size, org in zip(plan.fanout_sizes, bench.fanout_orgs, strict=True):
        await _fanout_one(bench, size, org)


async def _fanout_one(bench: Bench, size: int, org: list[int]) -> None:
    plan = bench.plan
    limit = 0.1 if size <= 1_000 else 1.0
    key = f"fanout_p99_{size}"
    metric = f"peer join fan-out p99, org of {size:,}"
    target = f"<= {limit * 1000:.0f} ms"
    joins = min(plan.fanout_joins, max(1, size // 10))
    if size + FD_RESERVE > bench.fd_limit:
        bench.add(not_measured(key, metric, target, f"open-files limit {bench.fd_limit}"))
        return
    others, joiners = org[:-joins], org[-joins:]
    started = time.time()
    await bench.lg.connect(others)
    deadline = time.monotonic() + plan.fanout_budget
    ok = False
    while time.monotonic() < deadline:
        stats = await bench.lg.stats()
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
        stats = await bench.lg.stats()
        done = stats["established"]
        rate = done / setup if setup else 0.0
        bench.add(
            not_measured(
                key,
                metric,
                target,
                f"setup too slow: {done:,} of {len(others):,} connected in {setup:.0f} s "
                f"({rate:.1f}/s); each join loads the whole org roster and welcome",
            )
        )
        bench.details[key] = {"setup_seconds": setup, "connected": done, "rate": rate}
        await bench.lg.close(org, concurrency=MASS_CLOSE_CONCURRENCY)
        return
    log(f"fan-out {size}: {len(others)} connected in {setup:.1f} s")
    await asyncio.sleep(1.0)
    peer_ids = [bench.peer_id(i) for i in joiners]
    await bench.lg.watch(peer_ids)
    latencies: list[float] = []
    per_join: list[dict[str, float]] = []
    missing = 0
    recipients_total = 0
    for joined, (index, peer_id) in enumerate(zip(joiners, peer_ids, strict=True)):
        recipients = len(others) + joined  # earlier joiners are online too
        recipients_total += recipients
        await bench.lg.connect([index], ramp=False)
        wait_until = time.monotonic() + 30
        arrivals: dict[int, float] = {}
        while time.monotonic() < wait_until:
            arrivals = await bench.lg.arrivals(peer_id)
            if len(arrivals) >= recipients:
                break
            await asyncio.sleep(0.05)
        session = (await bench.lg.sessions([index]))[index]
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
    bench.details[key] = {"setup_seconds": setup, "joins": per_join}
    p99 = percentile(latencies, 99) if latencies else None
    welcomes = [j["welcome"] for j in per_join]
    welcome_p50 = percentile(welcomes, 50) if welcomes else None
    verdict, passed = judge(p99, limit, at_most=True)
    if missing:
        verdict, passed = f"{verdict}; {missing} deliveries missing", False
    bench.add(
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
    await bench.lg.close(org, concurrency=MASS_CLOSE_CONCURRENCY)
