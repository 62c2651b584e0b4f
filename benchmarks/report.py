"""How the runner reports: table rows, verdicts against targets, units and progress lines;
the machine's facts, the one markdown table, and the result as JSON.

Its own module so that the scenarios (:mod:`benchmarks.scenarios`) build the same rows
without importing the runner, which runs as ``__main__``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.plan import Plan


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    key: str
    metric: str
    target: str
    measured: str
    verdict: str
    notes: str = ""
    value: float | None = None
    limit: float | None = None
    passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def judge(value: float | None, limit: float, *, at_most: bool) -> tuple[str, bool | None]:
    """'ratio - pass/FAIL' against a target; ratio is measured/target."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured", None
    ratio = value / limit if limit else math.inf
    ok = value <= limit if at_most else value >= limit
    return f"{ratio:.2f}x target, {'pass' if ok else 'FAIL'}", ok


def fmt_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def fmt_s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def fmt_bytes(value: float) -> str:
    if value >= 1 << 30:
        return f"{value / (1 << 30):.2f} GiB"
    if value >= 1 << 20:
        return f"{value / (1 << 20):.1f} MiB"
    return f"{value / 1024:.1f} KiB"


def not_measured(key: str, metric: str, target: str = "", why: str = "") -> Row:
    return Row(key, metric, target, "n/a", "not measured", why)


def machine_facts(pg_version: str) -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ports = ""
    with contextlib.suppress(OSError):
        ports = "-".join(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    try:
        import uvloop

        loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(int(meminfo[1]) / (1 << 20), 1),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "event_loop": loop,
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "ephemeral_ports": ports,
        "kernel": platform.release(),
        "shared": "server, PostgreSQL and load generator run on this one machine",
        "loadavg_start": loadavg(),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def render_table(rows: list[Row], facts: dict[str, Any], plan: Plan) -> str:
    lines = [
        f"Machine: {facts['nproc']} CPU ({facts['cpu_model']}), {facts['memory_gib']} GiB RAM, "
        f"Python {facts['python']}, {facts['event_loop']}, {facts['postgresql']}; "
        f"{facts['shared']}; open-files limit {facts['nofile_limit']}; load average "
        f"{facts['loadavg_start']} at start, {facts.get('loadavg_end', '?')} at end.",
        f"Heartbeat {plan.hb_interval:g} s / timeout {plan.hb_timeout:g} s, "
        f"flush {plan.flush_interval:g} s; short-heartbeat scenarios "
        f"{plan.short_interval:g} s / {plan.short_timeout:g} s.",
        "",
        "| metric | target | measured | ratio/verdict | notes |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        notes = row.notes.replace("|", "/")
        lines.append(f"| {row.metric} | {row.target} | {row.measured} | {row.verdict} | {notes} |")
    return "\n".join(lines)


def result(
    plan: Plan,
    facts: dict[str, Any],
    rows: list[Row],
    details: dict[str, Any],
    *,
    started: float,
    workdir: Path,
) -> dict[str, Any]:
    """Everything a run measured, as written by ``--json``; ``table`` is what is printed."""
    return {
        "machine": facts,
        "plan": asdict(plan),
        "started_at": started,
        "seconds": time.time() - started,
        "metrics": {row.key: asdict(row) for row in rows},
        "details": details,
        "table": render_table(rows, facts, plan),
        "workdir": str(workdir),
    }


def print_result(result: dict[str, Any], json_path: str | None) -> None:
    """The table (and the hold's profile, if taken) on stdout; the JSON to ``json_path``."""
    print(result["table"])
    profile_top = result["details"].get("profile")
    if profile_top:
        print("\nServer profile (py-spy, ramp + hold), top frames by own samples:")
        for frame, share in profile_top["self"]:
            print(f"  {share:5.1f}%  {frame}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2, default=str) + "\n")
