"""The relays that are up, as this replica knows them, and the sweep that takes silent ones
off the list.

The list moves only with ``relay_changed`` events, so every replica tells its agents the
same relays in the same order. The sweep runs on every replica where relays can be; a
conditional update lets one of them record each relay going silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.protocol import Relay
from wiremesh.server.events.schemas import AnyEvent, RelayChanged
from wiremesh.server.paths import repository as paths_repository
from wiremesh.server.paths import service as paths_service

logger = logging.getLogger("wiremesh.presence")

RELAY_SWEEP_INTERVAL = 0.5


class RelayBoard:
    """Relays up by name, and the sweep loop once relays can exist here."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.up: dict[str, Relay] = {}
        self._sweep: asyncio.Task[None] | None = None

    async def load(self) -> None:
        async with self.sessionmaker() as session:
            for row in await paths_repository.online_relays(session):
                self.up[row.name] = Relay(
                    name=row.name, public_key=row.public_key, endpoint=row.endpoint
                )

    def ordered(self) -> list[Relay]:
        """The relays up, in the order every agent prefers them (so a relayed pair of
        devices picks the same relay without asking each other)."""
        return [self.up[name] for name in sorted(self.up)]

    def apply(self, events: Sequence[AnyEvent], *, may_sweep: bool) -> list[Relay] | None:
        """Follow the ``relay_changed`` events; the new ordered list if it changed.

        A relay coming up starts the sweep (``may_sweep``: the hub runs and is not
        stopping): one with its own credential needs no global token to exist.
        """
        before = self.ordered()
        for event in events:
            if not isinstance(event, RelayChanged):
                continue
            if not event.online:
                self.up.pop(event.name, None)
                continue
            if may_sweep:
                self.start_sweep()
            try:
                self.up[event.name] = Relay(
                    name=event.name, public_key=event.public_key, endpoint=event.endpoint
                )
            except ValueError:
                logger.warning("relay %r announced an unusable identity", event.name)
        after = self.ordered()
        return None if after == before else after

    def start_sweep(self) -> None:
        """Sweep only where relays can be: with the global token, or once a relay is up.
        Otherwise no transaction every half second (on SQLite each takes the write lock)."""
        if self._sweep is None:
            self._sweep = asyncio.create_task(self._sweep_loop(), name="wiremesh-relay-sweep")

    async def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(RELAY_SWEEP_INTERVAL)
            try:
                async with self.sessionmaker() as session:
                    taken = await paths_service.take_silent_relays_offline(session)
                    await session.commit()
                if taken:
                    logger.warning("relays went silent: %s", ", ".join(taken))
            except Exception:
                logger.exception("checking for silent relays failed; trying again")
