"""Notices a device whose sessions keep replacing each other: two agents sharing one
credential (a cloned machine, a copied state directory) each reconnect and push the other
out, a new session every few seconds, forever. Each supersede alone is routine (a
reconnect after a network change); many in a short window is the loop, and worth a warning.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

LOOP_THRESHOLD = 4
"""Supersedes of one device within ``LOOP_WINDOW`` seconds that make a loop."""
LOOP_WINDOW = 60.0
WARN_EVERY = 300.0
"""A looping device is warned about at most this often."""
MAX_DEVICES = 10_000


class SupersedeWatch:
    """Supersede times per device; ``superseded`` says when to warn."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._recent: dict[int, deque[float]] = {}
        self._warned_at: dict[int, float] = {}

    def superseded(self, device_id: int) -> int | None:
        """Count one supersede of ``device_id``; the number in the window when this one
        makes a loop worth warning about now, else None."""
        now = self._clock()
        times = self._recent.get(device_id)
        if times is None:
            if len(self._recent) >= MAX_DEVICES:
                self._recent.pop(next(iter(self._recent)))
            times = self._recent[device_id] = deque(maxlen=LOOP_THRESHOLD * 4)
        times.append(now)
        while times and times[0] < now - LOOP_WINDOW:
            times.popleft()
        if len(times) < LOOP_THRESHOLD:
            return None
        if now - self._warned_at.get(device_id, -WARN_EVERY) < WARN_EVERY:
            return None
        self._warned_at[device_id] = now
        return len(times)
