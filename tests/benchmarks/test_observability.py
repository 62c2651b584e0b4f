"""The observability benchmark runs and prints its table with every figure."""

from __future__ import annotations

import re
import subprocess
import sys


def test_the_observability_benchmark_prints_its_table() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.observability",
         "--repeat", "200", "--sessions", "300", "--orgs", "7"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| what | cost |"
    figures = rows[1:]
    assert len(figures) == 6
    for row in figures[:-1]:
        assert re.search(r"\| \d+\.\d\d µs \|$", row), row
    assert re.search(r"300 sessions in 7 orgs \| \d+\.\d ms \(\d+ KiB\) \|$", figures[-1])
