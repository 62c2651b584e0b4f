"""CI smoke test of the benchmark suite: the runner works end to end and its figures are sane.

Runs ``python -m benchmarks.run --quick`` with a hundred-odd agents, held by two server
replicas, and a small org spread over three replicas for the cross-replica fan-out, against
the test PostgreSQL. Only generous sanity bounds on timings: this must not flake on a busy
CI box.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get(
    "WIREMESH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
AGENTS = 120
SPREAD_ORG = 30
"""Online agents of the org the cross-replica fan-out spreads over three replicas."""
SPREAD_JOINS = 3
"""Timed joins per setting: one on each replica."""

EXPECTED_METRICS = {
    "heartbeat_naive_pongs_per_s",
    "heartbeat_batched_pongs_per_s",
    "heartbeat_ratio",
    "db_xact_per_flush",
    "held_agents",
    "hold_timeouts",
    "server_cpu_hold",
    "server_rss_hold",
    "loop_lag_p99_hold",
    "memory_per_connection",
    "connect_rate",
    "server_cpu_per_connect",
    "loadgen_cpu_per_connect",
    "fanout_p99_100",
    f"fanout_all_p99_{SPREAD_ORG}_1_replica",
    f"fanout_all_p99_{SPREAD_ORG}_3_replicas",
    "timeout_p99",
    "close_p99",
    "storm_sigkill",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("bench")
    out = workdir / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIREMESH_")}
    env["WIREMESH_BENCH_POSTGRES_URL"] = POSTGRES_URL
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--quick",
        "--agents",
        str(AGENTS),
        "--throughput-seconds",
        "2",
        "--xact-window",
        "3",
        "--replicas",
        "2",
        "--replica-fanout",
        str(SPREAD_ORG),
        "--replica-fanout-joins",
        str(SPREAD_JOINS),
        "--json",
        str(out),
        "--workdir",
        str(workdir / "logs"),
    ]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"runner failed:\n{done.stdout}\n{done.stderr[-5000:]}"
    return done.stdout, json.loads(out.read_text())


def value(result: dict[str, Any], key: str) -> float:
    figure = result["metrics"][key]["value"]
    assert figure is not None, f"{key} was not measured: {result['metrics'][key]}"
    return float(figure)


def test_prints_one_table_with_every_metric(quick_run: tuple[str, dict[str, Any]]) -> None:
    stdout, result = quick_run
    assert "| metric | target | measured | ratio/verdict | notes |" in stdout
    assert set(result["metrics"]) == EXPECTED_METRICS
    for row in result["metrics"].values():
        assert row["metric"] in stdout
    assert result["table"] in stdout


def test_states_the_machine(quick_run: tuple[str, dict[str, Any]]) -> None:
    stdout, result = quick_run
    machine = result["machine"]
    assert machine["nproc"] >= 1
    assert machine["python"] == f"{sys.version_info.major}.{sys.version_info.minor}." + str(
        sys.version_info.micro
    )
    assert machine["postgresql"].startswith("PostgreSQL")
    assert "one machine" in stdout


def test_holds_every_agent_without_timeouts(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, result = quick_run
    assert value(result, "held_agents") == AGENTS
    assert len(result["details"]["hold"]["replicas"]) == 2, "the hold ran on two replicas"
    assert value(result, "hold_timeouts") == 0
    assert result["details"]["hold"]["reconnects_during_hold"] == 0
    assert result["details"]["hold"]["pongs_total"] > AGENTS  # every agent ponged, repeatedly
    assert 0 < value(result, "server_rss_hold") < 4 << 30
    assert value(result, "server_cpu_hold") >= 0
    assert value(result, "loop_lag_p99_hold") > 0
    # Every connect costs both sides some CPU; a figure of zero would mean nothing was read.
    assert value(result, "server_cpu_per_connect") > 0
    assert value(result, "loadgen_cpu_per_connect") > 0


def test_batched_heartbeat_beats_the_naive_one(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, result = quick_run
    naive = value(result, "heartbeat_naive_pongs_per_s")
    batched = value(result, "heartbeat_batched_pongs_per_s")
    assert naive > 0
    assert batched > 0
    assert value(result, "heartbeat_ratio") == pytest.approx(batched / naive)
    assert batched / naive > 1


def test_latency_figures_are_sane(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, result = quick_run
    timeout = result["plan"]["short_timeout"]
    # Silent agents end as 'timeout', no sooner than the timeout after their last pong.
    assert result["details"]["timeout"]["statuses"] == {"timeout": result["plan"]["silent_agents"]}
    assert timeout - 1.0 < value(result, "timeout_p99") < timeout + 30
    assert 0 < value(result, "close_p99") < 10
    assert 0 < value(result, "fanout_p99_100") < 10
    assert 0 < value(result, "storm_sigkill") < 120
    assert value(result, "db_xact_per_flush") >= 0


def test_heartbeat_path_makes_no_per_pong_transactions(
    quick_run: tuple[str, dict[str, Any]],
) -> None:
    _, result = quick_run
    window = result["details"]["xact"]
    transactions = window["commits"] + window["rollbacks"]
    # Agents ponged throughout the window, yet the database saw a handful of transactions
    # (a flush per interval, the event reader's polls): nothing per pong.
    assert window["pongs"] >= 20, window
    assert transactions < window["pongs"] / 4, window
    assert result["metrics"]["db_xact_per_flush"]["passed"] is True


def test_fans_joins_out_across_three_replicas(quick_run: tuple[str, dict[str, Any]]) -> None:
    stdout, result = quick_run
    spread_key = f"fanout_all_p99_{SPREAD_ORG}_3_replicas"
    alone = value(result, f"fanout_all_p99_{SPREAD_ORG}_1_replica")
    spread = value(result, spread_key)
    assert 0 < alone < 10
    assert 0 < spread < 10
    row = result["metrics"][spread_key]
    assert row["target"] == "<= 150 ms"
    assert row["limit"] == pytest.approx(0.15)
    assert "x target" in row["verdict"]
    assert "x one replica" in row["verdict"]
    assert "<= 150 ms" in stdout

    details = result["details"]["fanout_replicas"]
    # One org, its agents spread evenly: every replica holds a third of it.
    assert details["sessions_per_server"] == {
        f"bench-replica-{replica}": SPREAD_ORG // 3 for replica in range(3)
    }
    spread_joins = details["spread"]["joins"]
    assert {join["joiner_replica"] for join in spread_joins} == {0, 1, 2}
    for join in spread_joins + details["one_replica"]["joins"]:
        assert join["received"] == join["recipients"] == SPREAD_ORG, join
    # Each join crossed replicas: the agents of every replica had it.
    for join in spread_joins:
        assert {int(replica) for replica in join["by_replica"]} == {0, 1, 2}, join
