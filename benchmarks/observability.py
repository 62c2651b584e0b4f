"""What logs and metrics cost the server: per session event, per heartbeat flush, per scrape.

``python -m benchmarks.observability [--sessions 50000] [--orgs 5000]``

No database and no sockets: the figures are the CPU the observability adds to one
transition, and what one scrape of ``/metrics`` takes with many sessions and orgs (a
``PresenceHub`` whose registry is filled with that many sessions; the collectors read only
its counts). Log lines are formatted as the server formats them and written to /dev/null,
so the figure is the logging work, not a terminal's speed. One markdown table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import time
from collections.abc import Callable
from typing import Any

from wiremesh.server.config import Settings
from wiremesh.server.logs import JsonFormatter, RedactSecrets
from wiremesh.server.metrics.collectors import PresenceCollector
from wiremesh.server.metrics.recorder import ServerMetrics
from wiremesh.server.presence.hub import PresenceHub


def per_call(work: Callable[[], Any], repeat: int) -> float:
    """Microseconds per call, best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeat):
            work()
        best = min(best, time.perf_counter() - started)
    return best / repeat * 1e6


def _logger(formatter: logging.Formatter, level: int) -> logging.Logger:
    logger = logging.getLogger(f"wiremesh.bench.{type(formatter).__name__}.{level}")
    logger.propagate = False
    logger.setLevel(level)
    handler = logging.StreamHandler(open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the run
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets())
    logger.handlers = [handler]
    return logger


def session_event_costs(repeat: int) -> list[tuple[str, float]]:
    metrics = ServerMetrics("bench")
    fields = {
        "event": "session_ended",
        "peer_id": "peer-0123456789",
        "org_id": 7,
        "virtual_ip": "100.64.0.7",
        "public_ip": "198.51.100.4",
        "connection_id": "6c1e1f1c-8f1e-4b5e-9b0e-1c2d3e4f5a6b",
        "status": "disconnected",
        "reason": "client_closed",
        "close_code": 1000,
    }
    args = (
        "peer-0123456789", "laptop", "100.64.0.7", 7, "198.51.100.4:51820",
        "disconnected", "client_closed", 1000, "6c1e1f1c-8f1e-4b5e-9b0e-1c2d3e4f5a6b",
    )  # fmt: skip
    message = (
        "session ended: device %s (%s, %s) of org %d from %s: %s, %s, close code %s, connection %s"
    )
    text = _logger(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"), 20)
    json_logger = _logger(JsonFormatter(), 20)
    quiet = _logger(JsonFormatter(), 30)
    return [
        ("counter: session_ended(status, reason)", per_call(
            lambda: metrics.session_ended("disconnected", "client_closed"), repeat)),
        ("histogram: heartbeat_flushed(size, seconds)", per_call(
            lambda: metrics.heartbeat_flushed(500, 0.004), repeat)),
        ("log line below the level (filtered out)", per_call(
            lambda: quiet.info(message, *args, extra=fields), repeat)),
        ("log line, text format", per_call(
            lambda: text.info(message, *args, extra=fields), repeat)),
        ("log line, JSON format", per_call(
            lambda: json_logger.info(message, *args, extra=fields), repeat)),
    ]  # fmt: skip


def scrape_cost(sessions: int, orgs: int) -> tuple[float, int]:
    """Milliseconds of one scrape of the presence gauges, and the exposition's size."""
    from prometheus_client import CollectorRegistry, generate_latest

    hub = PresenceHub(Settings(), sessionmaker=None)  # type: ignore[arg-type]  # never opened
    placeholder: Any = object()
    for number in range(sessions):
        org_sessions = hub.registry.by_org.setdefault(number % orgs, {})
        org_sessions[number] = placeholder
        hub.registry.by_connection[number] = placeholder  # type: ignore[index]
    registry = CollectorRegistry()
    registry.register(PresenceCollector(hub))
    body = generate_latest(registry)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        generate_latest(registry)
        best = min(best, time.perf_counter() - started)
    return best * 1e3, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50_000)
    parser.add_argument("--orgs", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=20_000)
    options = parser.parse_args()
    rows = session_event_costs(options.repeat)
    scrape_ms, size = asyncio.run(_scrape_in_loop(options.sessions, options.orgs))
    out = io.StringIO()
    out.write("| what | cost |\n|---|---|\n")
    for name, micros in rows:
        out.write(f"| {name} | {micros:.2f} µs |\n")
    out.write(
        f"| scrape of the presence gauges, {options.sessions} sessions in {options.orgs} orgs "
        f"| {scrape_ms:.1f} ms ({size / 1024:.0f} KiB) |\n"
    )
    print(out.getvalue(), end="")


async def _scrape_in_loop(sessions: int, orgs: int) -> tuple[float, int]:
    """PresenceHub builds asyncio primitives: measure inside a running loop."""
    return scrape_cost(sessions, orgs)


if __name__ == "__main__":
    main()
