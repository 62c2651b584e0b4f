"""Wakes the watchers of an organization (the dashboard's live pages) when its events arrive.

The event feed hands every batch to the presence hub; ``chain`` puts this broadcast after it,
so a watcher woken here reads tables that already show the change, whichever replica made it.
A watcher only learns *that* its org changed and reads the state itself: nothing is queued
per watcher, so a slow page cannot hold memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from wiremesh.server.events.feed import ApplyEvents
from wiremesh.server.events.schemas import AnyEvent


class EventBroadcast:
    def __init__(self) -> None:
        self._watchers: dict[int, set[asyncio.Event]] = {}

    def publish(self, events: Sequence[AnyEvent]) -> None:
        for org_id in {event.org_id for event in events}:
            for watcher in self._watchers.get(org_id, ()):
                watcher.set()

    def chain(self, apply: ApplyEvents) -> ApplyEvents:
        """``apply``, then wake the watchers of every org in the batch."""

        async def apply_then_publish(events: Sequence[AnyEvent]) -> None:
            await apply(events)
            self.publish(events)

        return apply_then_publish

    @contextmanager
    def watch(self, org_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever ``org_id`` changes; clear it before reading the state."""
        watcher = asyncio.Event()
        self._watchers.setdefault(org_id, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers.get(org_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[org_id]

    def watching(self, org_id: int) -> int:
        return len(self._watchers.get(org_id, ()))
