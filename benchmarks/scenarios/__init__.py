"""The benchmark scenarios, one module each, run in this order by :func:`run_all`.

Each takes the :class:`~benchmarks.cluster.Bench` (database, load generator, servers) and
adds its rows and details to it.
"""

from __future__ import annotations

from benchmarks.cluster import Bench
from benchmarks.scenarios import fanout, fanout_replicas, hold, storm, throughput, timeouts

SCENARIOS = ("throughput", "hold", "fanout", "fanout_replicas", "timeouts", "storm")


async def run_all(bench: Bench, only: set[str] | None = None) -> None:
    wanted = only or set(SCENARIOS)
    if "throughput" in wanted:
        await throughput.run(bench)
    if "hold" in wanted:
        await hold.run(bench)
    if "fanout" in wanted:
        await fanout.run(bench)
    if "fanout_replicas" in wanted:
        await fanout_replicas.run(bench)
    if "timeouts" in wanted:
        await timeouts.run(bench)
    if "storm" in wanted:
        for sig_name in bench.plan.storm_signals:
            await storm.run(bench, sig_name)
