"""How the runner reports: table rows, verdicts against targets, units and progress lines.

Its own module so that scenarios kept outside :mod:`benchmarks.run` build the same rows
without importing the runner, which runs as ``__main__``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any


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
