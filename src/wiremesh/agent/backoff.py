"""How long the agent waits before it reconnects; its own module so that tools (the
benchmarks' load generator) reconnect exactly like the agent without importing its runner."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: "full jitter" exponential backoff.

    The n-th retry in a row (n from 0) waits a uniformly random time in
    ``[0, min(cap, base * 2**n)]``, so agents cut off together do not return together.
    A session that lasted longer than ``reset_after`` seconds starts the count again.
    """

    base: float = 0.5
    cap: float = 30.0
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base and self.reset_after >= 0):
            raise ValueError("backoff needs base > 0, cap >= base and reset_after >= 0")

    def ceiling(self, attempt: int) -> float:
        """The longest delay of retry number ``attempt`` (0-based)."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 64))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))
