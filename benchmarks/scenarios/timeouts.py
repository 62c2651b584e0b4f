"""On a server with a short heartbeat: silent agents to ``timeout`` rows, and clean closes
to ``disconnected`` rows, each timed from the agent's side to the row's end."""

from __future__ import annotations

import asyncio

from benchmarks.cluster import Bench
from benchmarks.plan import CLOSE_CONCURRENCY
from benchmarks.report import Row, fmt_ms, fmt_s, judge, not_measured
from benchmarks.server import percentile


async def run(bench: Bench) -> None:
    plan = bench.plan
    await bench.start_server(plan.short_interval, plan.short_timeout)
    silent = bench.hold_indices[: plan.silent_agents]
    closing = bench.hold_indices[plan.silent_agents : plan.silent_agents + plan.close_agents]
    everyone = silent + closing
    ok, _, _ = await bench.ramp(everyone, f"short-heartbeat set ({len(everyone)})")
    if not ok:
        bench.add(not_measured("timeout_p99", "silent agent to 'timeout'"))
        bench.add(not_measured("close_p99", "clean close to 'disconnected'"))
        await bench.lg.close(everyone)
        return
    await asyncio.sleep(2.5 * plan.short_interval)

    # Silent agents: last pong -> the row's disconnected_at.
    info = await bench.lg.silence(silent)
    rows = await bench.wait_rows(
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
    bench.details["timeout"] = {"statuses": statuses, "latencies": len(latencies)}
    bench.add(
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
    closed = await bench.lg.close(closing, concurrency=CLOSE_CONCURRENCY)
    rows = await bench.wait_rows([closed[i]["connection_id"] for i in closing], 15)
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
    bench.add(
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
    await bench.lg.close(everyone)
