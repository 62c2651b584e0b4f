"""What one timed join measured, and a setting's joins together (one replica, or spread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.server import percentile


@dataclass
class JoinTiming:
    """One join: seconds from the joiner's connect to each recipient's receive timestamp,
    grouped by the replica that holds the recipient."""

    joiner_replica: int
    recipients: int
    welcome: float | None
    delays: dict[int, list[float]]

    @property
    def received(self) -> int:
        return sum(len(delays) for delays in self.delays.values())

    @property
    def every_delay(self) -> list[float]:
        return [delay for delays in self.delays.values() for delay in delays]

    @property
    def same_replica(self) -> list[float]:
        return self.delays.get(self.joiner_replica, [])

    @property
    def other_replicas(self) -> list[float]:
        return [t for r, delays in self.delays.items() if r != self.joiner_replica for t in delays]

    @property
    def complete(self) -> float | None:
        """When the last recipient had it; None if some never did within the timeout."""
        if self.received < self.recipients:
            return None
        return max(self.every_delay)

    @property
    def broadcast_spans(self) -> list[float]:
        """Per replica, its first recipient to its last: writing the delta to its sockets
        (and the load generator reading them)."""
        return [max(delays) - min(delays) for delays in self.delays.values() if delays]

    def summary(self) -> dict[str, Any]:
        return {
            "joiner_replica": self.joiner_replica,
            "recipients": self.recipients,
            "received": self.received,
            "complete": self.complete,
            "welcome": self.welcome,
            "by_replica": {
                replica: {"count": len(delays), "first": min(delays), "last": max(delays)}
                for replica, delays in sorted(self.delays.items())
                if delays
            },
        }


@dataclass
class Setting:
    """The joins timed with the org on ``replicas`` servers."""

    replicas: int
    joins: list[JoinTiming]
    setup_seconds: float
    server_cpu_percent: float
    loadgen_cpu_percent: float
    machine_load: dict[str, str] = field(default_factory=dict)
    """Load average and CPU pressure before and after the joins: the machine is shared, and
    the two settings run one after the other."""
    profiles: dict[str, Any] = field(default_factory=dict)
    """py-spy's top frames per server during the joins (with ``--profile``)."""

    @property
    def completions(self) -> list[float]:
        return [c for c in (join.complete for join in self.joins) if c is not None]

    @property
    def missing(self) -> int:
        return sum(join.recipients - join.received for join in self.joins)

    def completion(self, q: float) -> float | None:
        return _percentile(self.completions, q)

    def delivery(self, q: float) -> float | None:
        return _percentile([t for join in self.joins for t in join.every_delay], q)

    def welcome(self, q: float) -> float | None:
        return _percentile([j.welcome for j in self.joins if j.welcome is not None], q)

    def first_on_joiners_replica(self, q: float) -> float | None:
        return _percentile([min(j.same_replica) for j in self.joins if j.same_replica], q)

    def first_on_other_replicas(self, q: float) -> float | None:
        return _percentile([min(j.other_replicas) for j in self.joins if j.other_replicas], q)

    def last_on_joiners_replica(self, q: float) -> float | None:
        return _percentile([max(j.same_replica) for j in self.joins if j.same_replica], q)

    def last_on_other_replicas(self, q: float) -> float | None:
        return _percentile([max(j.other_replicas) for j in self.joins if j.other_replicas], q)

    def broadcast_span(self, q: float) -> float | None:
        return _percentile([span for j in self.joins for span in j.broadcast_spans], q)

    def summary(self) -> dict[str, Any]:
        """Every figure, and each stage of a join's way: connect to welcome, to the first
        agent on the joiner's replica (local wake-up) and on the others (NOTIFY), and the
        span over each replica's sockets."""
        return {
            "replicas": self.replicas,
            "completion_p50": self.completion(50),
            "completion_p99": self.completion(99),
            "delivery_p50": self.delivery(50),
            "delivery_p99": self.delivery(99),
            "welcome_p50": self.welcome(50),
            "first_on_joiners_replica_p50": self.first_on_joiners_replica(50),
            "first_on_joiners_replica_p99": self.first_on_joiners_replica(99),
            "first_on_other_replicas_p50": self.first_on_other_replicas(50),
            "first_on_other_replicas_p99": self.first_on_other_replicas(99),
            "last_on_joiners_replica_p99": self.last_on_joiners_replica(99),
            "last_on_other_replicas_p99": self.last_on_other_replicas(99),
            "broadcast_span_p50": self.broadcast_span(50),
            "broadcast_span_p99": self.broadcast_span(99),
            "missing_deliveries": self.missing,
            "setup_seconds": self.setup_seconds,
            "server_cpu_percent": self.server_cpu_percent,
            "loadgen_cpu_percent": self.loadgen_cpu_percent,
            "machine_load": self.machine_load,
            "profiles": self.profiles,
            "joins": [join.summary() for join in self.joins],
        }


def _percentile(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None
