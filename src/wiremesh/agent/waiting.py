"""Waiting for a task, a stop request or a timeout, whichever comes first.

The session loop waits this way for a connection, each frame and each backoff delay, so a
stop request is never stuck behind a silent server.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any, TypeVar

__all__ = ["Wake", "cancel", "wait_or_stop"]

_T = TypeVar("_T")


class Wake(Enum):
    """Why :func:`wait_or_stop` returned."""

    DONE = "done"
    STOPPED = "stopped"
    TIMEOUT = "timeout"


async def cancel(task: asyncio.Task[Any]) -> bool:
    """Cancel ``task`` and wait for it; whether it had finished first (result kept).

    A cancellation of the *calling* task is never swallowed.
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        return False
    except Exception:
        return True
    return True


async def wait_or_stop(
    task: asyncio.Task[_T] | None, stop: asyncio.Future[Any], seconds: float | None
) -> Wake:
    """Wait for ``task`` (if any), ``stop`` or ``seconds``, whichever comes first.

    ``task`` wins a tie, so a frame that arrived is never dropped for a stop.
    """
    waiting: set[asyncio.Future[Any]] = {stop}
    if task is not None:
        waiting.add(task)
    done, _pending = await asyncio.wait(
        waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
    )
    if task is not None and task in done:
        return Wake.DONE
    if stop in done:
        return Wake.STOPPED
    return Wake.TIMEOUT
