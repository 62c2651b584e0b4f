"""Heartbeat write throughput: the seed's commit-per-pong against the batched flush.

Both run against the same PostgreSQL database, on ``connection_status`` rows made for the
purpose (one per simulated session, status ``connected``) and the devices they belong to.

- **naive** (the seed's pattern): every pong opens an ORM session, loads the
  ``ConnectionStatus`` row and the ``VirtualIPMapping`` row, sets ``last_pong_at``,
  ``last_seen_at`` and the device's ``last_seen_at`` to ``datetime.now(UTC)`` and commits.
  ``concurrency`` pongs are in flight at once, as fast as the database takes them.
- **batched** (ours): ``PresenceHub.record_pong`` for each pong and ``PresenceHub.flush``,
  i.e. the real ``repository.flush_heartbeats`` with one batch holding every session that
  ponged since the last flush. ``batch`` is the batch size the server sees at the target
  load (agents / heartbeat interval * flush interval), flushed back to back.

Each reports pongs written per second; nothing else touches those rows meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wiremesh.protocol import ServerSession
from wiremesh.server.config import Settings
from wiremesh.server.db.session import create_engine, create_sessionmaker
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.presence.directory import identity_of
from wiremesh.server.presence.history import SessionHistory
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus
from wiremesh.server.presence.sessions import LiveSession

BENCH_SERVER_ID = "bench-throughput"


@dataclass(frozen=True, slots=True)
class Throughput:
    pongs: int
    seconds: float
    transactions: int

    @property
    def per_second(self) -> float:
        return self.pongs / self.seconds if self.seconds > 0 else 0.0


class _NullTransport:
    async def send(self, text: str) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None


async def make_sessions(
    sessionmaker: async_sessionmaker[AsyncSession], count: int
) -> list[tuple[int, VirtualIPMapping]]:
    """Insert ``count`` live ``connection_status`` rows, one per device (first devices)."""
    async with sessionmaker() as session:
        devices = list(
            (
                await session.execute(
                    select(VirtualIPMapping).order_by(VirtualIPMapping.id).limit(count)
                )
            ).scalars()
        )
        if len(devices) < count:
            raise ValueError(f"need {count} devices, the database has {len(devices)}")
        now = datetime.now(UTC)
        rows = [
            {
                "user_id": device.user_id,
                "org_id": device.org_id,
                "virtual_ip": device.virtual_ip,
                "peer_id": device.peer_id,
                "connection_id": uuid.uuid4(),
                "status": ConnectionState.CONNECTED.value,
                "connected_at": now,
                "last_seen_at": now,
                "server_id": BENCH_SERVER_ID,
            }
            for device in devices
        ]
        ids = list(
            (
                await session.execute(insert(ConnectionStatus).returning(ConnectionStatus.id), rows)
            ).scalars()
        )
        await session.commit()
    return list(zip(ids, devices, strict=True))


async def drop_sessions(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        await session.execute(
            delete(ConnectionStatus).where(ConnectionStatus.server_id == BENCH_SERVER_ID)
        )
        await session.commit()


async def naive_pong(
    sessionmaker: async_sessionmaker[AsyncSession], row_id: int, device_id: int
) -> None:
    """The seed's pong handler: load both rows, set the timestamps, commit."""
    async with sessionmaker() as session:
        connection = await session.get(ConnectionStatus, row_id)
        mapping = await session.get(VirtualIPMapping, device_id)
        now = datetime.now(UTC)
        if connection is not None:
            connection.last_pong_at = now
            connection.last_seen_at = now
        if mapping is not None:
            mapping.last_seen_at = now
        await session.commit()


async def run_naive(
    engine: AsyncEngine,
    pairs: list[tuple[int, VirtualIPMapping]],
    *,
    seconds: float,
    concurrency: int,
) -> Throughput:
    sessionmaker = create_sessionmaker(engine)
    cycle = itertools.cycle([(row_id, device.id) for row_id, device in pairs])
    count = 0
    deadline = time.perf_counter() + seconds

    async def pump() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            row_id, device_id = next(cycle)
            await naive_pong(sessionmaker, row_id, device_id)
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(pump() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Throughput(pongs=count, seconds=elapsed, transactions=count)


async def run_batched(
    settings: Settings,
    engine: AsyncEngine,
    pairs: list[tuple[int, VirtualIPMapping]],
    *,
    seconds: float,
) -> Throughput:
    """Every session pongs once per round; one ``history.flush()`` writes the round."""
    sessionmaker = create_sessionmaker(engine)
    history = SessionHistory(sessionmaker, BENCH_SERVER_ID)
    network = "10.0.0.0/8"
    lives = []
    for row_id, device in pairs:
        live = LiveSession(
            device=identity_of(device, network),
            protocol=ServerSession(0.0),
            transport=_NullTransport(),
            public_ip="127.0.0.1",
            public_port=51820,
            agent_version="bench",
        )
        live.row_id = row_id
        lives.append(live)
    written = 0
    flushes = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for live in lives:
            history.record_pong(live)
        written += await history.flush()
        flushes += 1
    elapsed = time.perf_counter() - started
    return Throughput(pongs=written, seconds=elapsed, transactions=flushes)


async def measure(
    database_url: str,
    *,
    seconds: float,
    concurrency: int,
    batch: int,
) -> dict[str, Throughput]:
    """Naive then batched on the same database; the rows are removed afterwards."""
    settings = Settings(database_url=database_url, database_pool_size=min(200, concurrency))
    engine = create_engine(settings)
    try:
        sessionmaker = create_sessionmaker(engine)
        pairs = await make_sessions(sessionmaker, batch)
        try:
            naive = await run_naive(engine, pairs, seconds=seconds, concurrency=concurrency)
            batched = await run_batched(settings, engine, pairs, seconds=seconds)
        finally:
            await drop_sessions(sessionmaker)
    finally:
        await engine.dispose()
    return {"naive": naive, "batched": batched}
