"""The last known peers, configured and kept moving while no session is live.

The session loop remembers what the server last said (:meth:`OfflinePeers.remember`,
which also writes the peer cache when it changed). When a session ends, or the first
connection attempt fails with a cache on disk, :meth:`OfflinePeers.go_offline` configures
those peers; while the loop waits to reconnect, :meth:`OfflinePeers.tick` moves their paths
(knocks, relay fallback) on a clock of its own, every ``interval``, as the session's path
tick would. A welcome ends it (:meth:`OfflinePeers.online`). Nothing here knows of sockets:
the reconcile is the runner's, passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from wiremesh.agent.paths import PathSelector
from wiremesh.agent.peercache import KnownPeers, PeerCache, describe, known_from, load_peer_cache
from wiremesh.protocol import Peer, Relay

__all__ = ["OfflinePeers", "Reconcile"]

logger = logging.getLogger("wiremesh.agent")

Reconcile = Callable[[Mapping[str, Peer], Sequence[Relay]], Awaitable[None]]
"""One reconcile of the given peers and relays (the runner's)."""


class OfflinePeers:
    """What the server last told of, and whether it is configured for want of a session."""

    def __init__(
        self,
        reconcile: Reconcile,
        paths: PathSelector,
        *,
        interval: float,
        state_dir: Path | None = None,
        owner: str = "",
    ) -> None:
        self._reconcile = reconcile
        self._paths = paths
        self.interval = interval
        self._state_dir = state_dir
        self._owner = owner
        self._cache = PeerCache(state_dir, owner) if state_dir is not None else None
        self.known: KnownPeers | None = None
        """The peers and relays the server last told of (or the cache, before it did)."""
        self.offline = False
        """No live session: ``known`` is configured and its paths move on :meth:`tick`."""
        self._next_tick = 0.0

    def load(self) -> None:
        """Take the cache on disk as what is known (at start, before any session)."""
        if self._state_dir is not None:
            self.known = load_peer_cache(self._state_dir, self._owner)

    def remember(self, peers: Mapping[str, Peer], relays: Sequence[Relay]) -> None:
        """Keep what the server said as the last known peers (and in the cache, if new)."""
        self.known = known_from(peers, relays, self._paths.own_public_ip)
        if self._cache is not None:
            self._cache.save(self.known)

    def online(self) -> None:
        """A session is live again: its peers are the server's, not these."""
        self.offline = False

    async def go_offline(self, now: float, *, never_connected: bool) -> None:
        """No live session any more (or yet): keep the last known peers configured."""
        if self.known is None or self.offline:
            return
        self.offline = True
        if never_connected:
            logger.warning(
                "the server cannot be reached: configuring the last known %s",
                describe(self.known),
            )
            if self._paths.own_public_ip is None:
                self._paths.own_public_ip = self.known.public_ip
        await self._reconcile(self.known.peers, self.known.relays)
        self._next_tick = now + self.interval

    async def tick(self, now: float) -> None:
        """Move the known peers' paths, if offline and a tick is due."""
        if self.offline and self.known is not None and now >= self._next_tick:
            self._next_tick = now + self.interval
            await self._reconcile(self.known.peers, self.known.relays)

    def until_tick(self, now: float) -> float | None:
        """Seconds to the next :meth:`tick` while offline; ``None`` when there is none."""
        return max(0.0, self._next_tick - now) if self.offline else None
