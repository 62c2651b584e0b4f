"""Each replica's reader of ``mesh_event``: every event once, in id order, none lost.

It wakes on PostgreSQL NOTIFY (a dedicated connection, re-made when it drops), after any
local commit that recorded events, and at least every ``event_poll_interval`` (the only
wake-up for changes the CLI makes to the embedded SQLite database). A dropped database
connection loses nothing: the reader resumes after the last id it applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from wiremesh.server.events import repository
from wiremesh.server.events.recorder import CHANNEL, EVENTS_RECORDED
from wiremesh.server.events.schemas import AnyEvent

logger = logging.getLogger("wiremesh.events")

BATCH_SIZE = 1000
LISTEN_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)

ApplyEvents = Callable[[Sequence[AnyEvent]], Awaitable[None]]
"""Applies a batch in order; must not raise (a failing event is the applier's to log)."""
ResetView = Callable[[], Awaitable[None]]
"""Called when events were pruned before this reader saw them: rebuild from the tables."""


class EventFeed:
    """Tails the events table from where this replica joined."""

    def __init__(self, database_url: str, *, poll_interval: float) -> None:
        self.database_url = database_url
        self.poll_interval = poll_interval
        self.cursor = 0
        self.applied = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = False

    def after_commit(self, session: Session) -> None:
        """The sessionmaker's after-commit callback: wake at once for our own changes."""
        if session.info.pop(EVENTS_RECORDED, False):
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def start(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        apply: ApplyEvents,
        reset: ResetView,
    ) -> None:
        """Join at the newest event: the state before it is read from the tables.

        The sessionmaker is given here, not at construction, because it is made with this
        feed's ``after_commit`` as its callback."""
        self.sessionmaker = sessionmaker
        self.apply = apply
        self.reset = reset
        async with self.sessionmaker() as session:
            self.cursor = await repository.last_event_id(session)
        self._tasks.append(asyncio.create_task(self._read_loop(), name="wiremesh-event-reader"))
        if make_url(self.database_url).get_backend_name() == "postgresql":
            self._tasks.append(
                asyncio.create_task(self._listen_loop(), name="wiremesh-event-listener")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def catch_up(self) -> int:
        """Read and apply everything after the cursor; returns how many events were applied."""
        applied = 0
        async with self._lock:
            while True:
                async with self.sessionmaker() as session:
                    events = await repository.events_after(session, self.cursor, BATCH_SIZE)
                    if events and events[0].id != self.cursor + 1 and self.cursor:
                        oldest = await repository.first_event_id(session)
                        pruned = oldest is not None and oldest > self.cursor + 1
                    else:
                        pruned = False
                if pruned:
                    logger.warning(
                        "events after %d were pruned before this replica read them; "
                        "rebuilding its view",
                        self.cursor,
                    )
                    await self.reset()
                if not events:
                    return applied
                await self.apply(events)
                self.cursor = events[-1].id
                applied += len(events)
                self.applied += len(events)
                if len(events) < BATCH_SIZE:
                    return applied

    async def _read_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception:
                logger.exception("reading events failed; retrying")
                await asyncio.sleep(self.poll_interval)

    async def _listen_loop(self) -> None:
        """LISTEN on a connection of its own; every (re)connect also triggers a read."""
        dsn = (
            make_url(self.database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        failures = 0
        while True:
            try:
                await self._listen_once(dsn)
                failures = 0
                logger.warning("the event listener's database connection was lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cannot listen for events (%r); polling meanwhile", exc)
                failures += 1
            await asyncio.sleep(LISTEN_RETRY_DELAYS[min(failures, len(LISTEN_RETRY_DELAYS) - 1)])

    async def _listen_once(self, dsn: str) -> None:
        """Hold one LISTEN connection until it is lost."""
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_notify(*_: Any) -> None:
            self._wake.set()

        def on_lost(*_: Any) -> None:
            if not lost.done():
                lost.set_result(None)

        connection = await asyncpg.connect(dsn)
        try:
            connection.add_termination_listener(on_lost)
            await connection.add_listener(CHANNEL, on_notify)
            self.listening = True
            self._wake.set()  # whatever was committed while nobody was listening
            await lost
        finally:
            self.listening = False
            if not connection.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close(timeout=2))
