"""The counters and histograms the hot paths touch, each replica in its own registry.

Every series carries ``server_id``, so the replicas of one deployment scraped into one
Prometheus stay apart. Counters are incremented in place (a dict lookup and an add);
whatever can be read off live state instead (sessions, queues, pools) is a gauge computed
at scrape time by :mod:`wiremesh.server.metrics.collectors`, never kept up to date.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

FLUSH_SIZE_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000)
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """What this replica counts; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._connects = Counter(
            "wiremesh_session_connects",
            "Agent sessions opened (authenticated and recorded)",
            ["server_id"],
            registry=registry,
        ).labels(server_id)
        self._ends = Counter(
            "wiremesh_session_ends",
            "Agent sessions ended, by final status (disconnected, timeout) and reason",
            ["server_id", "status", "reason"],
            registry=registry,
        )
        self._refused = Counter(
            "wiremesh_session_refusals",
            "Agent sockets closed before a session opened, by close code name",
            ["server_id", "reason"],
            registry=registry,
        )
        self._flush_size = Histogram(
            "wiremesh_heartbeat_flush_sessions",
            "Sessions written by one heartbeat flush",
            ["server_id"],
            buckets=FLUSH_SIZE_BUCKETS,
            registry=registry,
        ).labels(server_id)
        self._flush_seconds = Histogram(
            "wiremesh_heartbeat_flush_seconds",
            "Duration of one heartbeat flush transaction",
            ["server_id"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ).labels(server_id)
        self._fanout_seconds = Histogram(
            "wiremesh_peer_delta_fanout_seconds",
            "From a peer change reaching this replica to its delta written to every session",
            ["server_id"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ).labels(server_id)
        self._mails = Counter(
            "wiremesh_mails",
            "Mail delivery attempts by outcome (sent, smtp_error, ...)",
            ["server_id", "outcome"],
            registry=registry,
        )
        self._worker_runs = Counter(
            "wiremesh_worker_runs",
            "Background job runs (cleanup, event pruning, mail outbox, alerts) by outcome",
            ["server_id", "worker", "outcome"],
            registry=registry,
        )
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}

    def _child(self, metric: Counter, *labels: str) -> Counter:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.server_id, *labels)
        return child  # type: ignore[return-value]

    def session_opened(self) -> None:
        self._connects.inc()

    def session_ended(self, status: str, reason: str) -> None:
        self._child(self._ends, status, reason).inc()

    def session_refused(self, reason: str) -> None:
        self._child(self._refused, reason).inc()

    def heartbeat_flushed(self, sessions: int, seconds: float) -> None:
        self._flush_size.observe(sessions)
        self._flush_seconds.observe(seconds)

    def delta_fanned_out(self, seconds: float) -> None:
        self._fanout_seconds.observe(seconds)

    def mail_reported(self, outcome: str) -> None:
        self._child(self._mails, outcome).inc()

    def worker_ran(self, worker: str, *, ok: bool) -> None:
        self._child(self._worker_runs, worker, "ok" if ok else "error").inc()

    def worker_ran_named(self, worker: str, ok: bool) -> None:
        """``worker_ran`` in the shape ``PeriodicWorker.on_run`` calls."""
        self.worker_ran(worker, ok=ok)
