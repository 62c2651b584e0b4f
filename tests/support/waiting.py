"""Waiting for a condition: poll until it holds, fail with what was awaited."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    seconds: float = ...,
    what: str = ...,
    interval: float = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T | None], seconds: float = ..., what: str = ..., interval: float = ...
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    seconds: float = 5.0,
    what: str = "the condition",
    interval: float = 0.05,
) -> Any:
    """Poll ``probe`` (sync or async) until it returns a truthy value, which is returned;
    fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(interval)
