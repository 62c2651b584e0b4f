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
one replica; reconnect storms (SIGKILL, then SIGTERM);
and, on a server with a short heartbeat, silent-agent timeouts and clean closes. One
markdown table is printed and, with ``--json``, written as JSON with every figure and the
machine facts.

Layout: :mod:`benchmarks.plan` (what to run), :mod:`benchmarks.cluster` (database, load
generator and server replicas), :mod:`benchmarks.scenarios` (one module per scenario) and
:mod:`benchmarks.report` (rows, the table, the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.cluster import Bench, pg_version
from benchmarks.plan import Plan
from benchmarks.report import loadavg, machine_facts, print_result, result
from benchmarks.scenarios import SCENARIOS, run_all
from benchmarks.simagents import raise_nofile_limit


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


async def run(
    plan: Plan, workdir: Path, *, keep_db: bool = False, only: set[str] | None = None
) -> dict[str, Any]:
    facts = machine_facts(await pg_version())
    bench = Bench(plan, workdir, keep_db=keep_db)
    started = time.time()
    try:
        await bench.setup()
        await run_all(bench, only)
    finally:
        await bench.teardown()
    facts["loadavg_end"] = loadavg()
    return result(plan, facts, bench.rows, bench.details, started=started, workdir=workdir)


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
        outcome = asyncio.run(run(plan, workdir, keep_db=args.keep_db, only=only))
    print_result(outcome, args.json)


if __name__ == "__main__":
    main()
