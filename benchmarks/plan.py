"""What a benchmark run does: sizes, heartbeats and durations of every scenario."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

FD_RESERVE = 300
"""File descriptors the server needs besides agent sockets (pool, listener, logs)."""
PG_STATS_SETTLE = 12.0
"""Seconds to wait after a ramp before counting transactions: PostgreSQL (15+) backends
report their counts to pg_stat_database up to 10 s after they go idle, so a window opened
at once still counts the ramp's own transactions."""
CLOSE_CONCURRENCY = 5
"""Clean closes in flight per load generator process in the close-latency scenario."""
MASS_CLOSE_CONCURRENCY = 10
"""Clean closes in flight per load generator process when a scenario ends."""


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
