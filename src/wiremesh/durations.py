"""Human durations (``90s``, ``15m``, ``12h``, ``7d``, ``2w``) for the CLI and settings."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.ASCII)


def parse_duration(text: str) -> timedelta:
    """Parse a duration; a bare number means seconds. Raises ValueError with a clear message."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (examples: 90s, 15m, 12h, 7d, 2w)")
    value, unit = match.groups()
    try:
        duration = timedelta(seconds=float(value) * _UNITS[unit or "s"])
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None
    if duration <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero (at least a microsecond)")
    return duration
