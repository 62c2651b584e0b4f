"""The event reader: every committed event once, in id order, however writers interleave;
none from a rolled-back transaction; woken at once by its own commits and by NOTIFY; a
reader that fell behind pruning rebuilds instead of skipping silently."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.waiting import eventually
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.db.session import create_sessionmaker
from wiremesh.server.events import recorder, repository
from wiremesh.server.events.feed import EventFeed
from wiremesh.server.events.models import MeshEvent
from wiremesh.server.events.schemas import AnyEvent, DeviceRemoved, OrgDeleted

SLOW_POLL = 30.0
"""Longer than any test: whatever is applied was woken, not polled."""


@dataclass
class Reader:
    feed: EventFeed
    sessionmaker: async_sessionmaker[AsyncSession]
    """Sessions that wake the feed when they commit events (this replica's own)."""
    applied: list[AnyEvent] = field(default_factory=list)
    resets: int = 0


@asynccontextmanager
async def reader(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], poll: float = SLOW_POLL
) -> AsyncIterator[Reader]:
    feed = EventFeed(settings.resolved_database_url, poll_interval=poll)
    engine = sessionmaker.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    state = Reader(feed, create_sessionmaker(engine, after_commit=feed.after_commit))

    async def apply(events: Sequence[AnyEvent]) -> None:
        state.applied.extend(events)

    async def reset() -> None:
        state.resets += 1

    await feed.start(state.sessionmaker, apply=apply, reset=reset)
    try:
        yield state
    finally:
        await feed.stop()


def removed(device_id: int) -> DeviceRemoved:
    return DeviceRemoved(org_id=1, kind="device_revoked", device_id=device_id, peer_id="p")


async def write(sessionmaker: async_sessionmaker[AsyncSession], *device_ids: int) -> None:
    async with sessionmaker() as session:
        await recorder.record(session, *(removed(device_id) for device_id in device_ids))
        await session.commit()


def device_ids(events: Sequence[AnyEvent]) -> list[int]:
    return [event.device_id for event in events if isinstance(event, DeviceRemoved)]


async def test_own_commits_wake_the_reader_and_rollbacks_leave_nothing(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:  # before the reader joins: not replayed
        await recorder.record(session, OrgDeleted(org_id=9))
        await session.commit()
    async with reader(settings, sessionmaker) as state:
        async with state.sessionmaker() as session:
            await recorder.record(session, removed(1))
            await session.rollback()
        await write(state.sessionmaker, 2, 3)

        async def both() -> bool:
            return device_ids(state.applied) == [2, 3]

        await eventually(both, 2, "the committed events are applied at once")
        assert [event.kind for event in state.applied] == ["device_revoked"] * 2
        ids = [event.id for event in state.applied]
        assert ids == sorted(ids)
        assert state.feed.cursor == ids[-1]


async def test_another_process_s_commits_are_read_within_the_poll_or_at_once_by_notify(
    backend: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``sessionmaker`` does not wake the reader: it stands for the CLI or another replica."""
    poll = SLOW_POLL if backend == "postgresql" else 0.2
    async with reader(settings, sessionmaker, poll=poll) as state:
        if backend == "postgresql":

            async def listening() -> bool:
                return state.feed.listening

            await eventually(listening, 5, "the reader listens")
        await write(sessionmaker, 7)

        async def seen() -> bool:
            return device_ids(state.applied) == [7]

        await eventually(seen, 2, "an event committed elsewhere is applied")


async def test_interleaved_writers_never_make_the_reader_skip_an_event(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Writers that take their ids in one order and commit in another: the reader, reading
    all the while, still sees every event once and in id order (the ordering lock)."""
    rng = random.Random(7)
    count = 40

    async def writer(number: int) -> None:
        await asyncio.sleep(rng.uniform(0, 0.05))
        async with sessionmaker() as session:
            await recorder.record(session, removed(number))
            await asyncio.sleep(rng.uniform(0, 0.03))  # commit later, others meanwhile
            await session.commit()

    async with reader(settings, sessionmaker, poll=0.005) as state:
        await asyncio.gather(*(writer(number) for number in range(count)))

        async def all_read() -> bool:
            return len(state.applied) >= count

        await eventually(all_read, 5, "every event is read")
        await asyncio.sleep(0.05)
    assert sorted(device_ids(state.applied)) == list(range(count)), "each exactly once"
    ids = [event.id for event in state.applied]
    assert ids == sorted(ids)


async def test_a_reader_behind_pruning_rebuilds_its_view(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await write(sessionmaker, 1)
    async with reader(settings, sessionmaker) as state:
        async with sessionmaker() as session:  # 2 to 4 come and all age; 1 to 3 are pruned
            await recorder.record(session, removed(2), removed(3), removed(4))
            await session.execute(update(MeshEvent).values(created_at=utcnow() - timedelta(days=2)))
            assert await repository.prune_events_before(session, utcnow(), 100) == 3
            await session.commit()
        await write(sessionmaker, 5)
        await state.feed.catch_up()
    assert state.resets == 1
    assert device_ids(state.applied) == [4, 5], "the newest is never pruned; none is skipped"


async def test_the_listener_comes_back_after_its_connection_is_cut(
    backend: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    if backend == "sqlite":
        pytest.skip("only PostgreSQL has a listening connection to lose")
    async with reader(settings, sessionmaker) as state:

        async def listening() -> bool:
            return state.feed.listening

        await eventually(listening, 5, "the reader listens")
        async with sessionmaker() as session:
            await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
                )
            )
            await session.commit()

        async def lost() -> bool:
            return not state.feed.listening

        await eventually(lost, 5, "the reader saw its connection go")
        await eventually(listening, 10, "the reader listens again")
        await write(sessionmaker, 11)

        async def seen() -> bool:
            return device_ids(state.applied) == [11]

        await eventually(seen, 2, "events after the cut are applied at once")
