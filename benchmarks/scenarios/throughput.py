"""Heartbeat write throughput, no server: the seed's commit-per-pong against the batched
flush, on the same database and rows, back to back (:mod:`benchmarks.naive`)."""

from __future__ import annotations

import math
from dataclasses import asdict

from benchmarks import naive
from benchmarks.cluster import Bench
from benchmarks.report import Row, judge, log


async def run(bench: Bench) -> None:
    plan = bench.plan
    log(
        f"heartbeat throughput: naive x{plan.naive_concurrency} vs batched "
        f"(batch {plan.batch}), {plan.throughput_seconds:g} s each"
    )
    result = await naive.measure(
        bench.db_url,
        seconds=plan.throughput_seconds,
        concurrency=plan.naive_concurrency,
        batch=plan.batch,
    )
    naive_rate = result["naive"].per_second
    batched_rate = result["batched"].per_second
    bench.details["throughput"] = {k: asdict(v) for k, v in result.items()}
    bench.add(
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
    bench.add(
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
    bench.add(
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
