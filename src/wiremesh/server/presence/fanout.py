"""Peer deltas: changes coalesced per organization, encoded once, written to every session.

Leading and trailing edge: a change in a quiet org goes out in this loop iteration; changes
that follow within the window wait for its end and share one delta. So a lone join costs no
delay and a storm one delta per window. Windows widen with the org's size, since a delta
costs one write per member.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from wiremesh.protocol import PeerRemove, PeerUpsert, encode_peers_delta
from wiremesh.server.presence.roster import PeerChange
from wiremesh.server.presence.sessions import LiveSession, SessionRegistry

COALESCE_MEMBERS_PER_BASE = 1000
MAX_COALESCE_WINDOW = 0.5

SendFrame = Callable[[LiveSession, str], Awaitable[bool]]


def _peer_id_of(change: PeerChange) -> str:
    return change.peer.peer_id if isinstance(change, PeerUpsert) else change.peer_id


class PeerFanout:
    def __init__(
        self,
        registry: SessionRegistry,
        send: SendFrame,
        base_window: float,
        *,
        on_delivered: Callable[[float], None] | None = None,
    ) -> None:
        self.registry = registry
        self.send = send
        self.base_window = base_window
        self.on_delivered = on_delivered
        """Told, per delta, the seconds from its first change queued to its last write."""
        self._pending: dict[int, dict[str, PeerUpsert | PeerRemove]] = {}
        self._first_queued_at: dict[int, float] = {}
        self._handles: dict[int, asyncio.Handle] = {}
        self._last_broadcast_at: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopped = False

    def queue(self, org_id: int, change: PeerChange) -> None:
        """Coalesce a change into the org's next delta (a later change of a peer wins)."""
        if self.stopped:
            return
        loop = asyncio.get_running_loop()
        self._pending.setdefault(org_id, {})[_peer_id_of(change)] = change
        self._first_queued_at.setdefault(org_id, loop.time())
        if org_id in self._handles:
            return
        quiet_at = self._last_broadcast_at.get(org_id, -math.inf) + self._window(org_id)
        delay = quiet_at - loop.time()
        self._handles[org_id] = (
            loop.call_later(delay, self._start, org_id)
            if delay > 0
            else loop.call_soon(self._start, org_id)
        )

    def _window(self, org_id: int) -> float:
        members = len(self.registry.by_org.get(org_id, ()))
        base = self.base_window
        return min(max(base, base * members / COALESCE_MEMBERS_PER_BASE), MAX_COALESCE_WINDOW)

    def _start(self, org_id: int) -> None:
        self._handles.pop(org_id, None)
        changes = self._pending.pop(org_id, None)
        queued_at = self._first_queued_at.pop(org_id, None)
        if not changes:
            return
        now = asyncio.get_running_loop().time()
        self._last_broadcast_at[org_id] = now
        task = asyncio.create_task(self._broadcast(org_id, changes, queued_at or now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _broadcast(
        self, org_id: int, changes: dict[str, PeerUpsert | PeerRemove], queued_at: float
    ) -> None:
        """Encode the delta once; a recipient named in it gets a copy without its own entry.

        In turn, not gathered: a write to a socket that is not backed up completes without
        suspending, so one task beats ten thousand; a stuck socket is cut by ``send``."""
        recipients = self.registry.of_org(org_id)
        if not recipients:
            return
        shared: dict[int, str] = {}  # one encoding per protocol version
        for live in recipients:
            version = live.protocol_version
            if live.device.peer_id in changes:
                others = [c for peer_id, c in changes.items() if peer_id != live.device.peer_id]
                if not others:
                    continue
                frame = encode_peers_delta(others, version)
            else:
                frame = shared.get(version) or shared.setdefault(
                    version, encode_peers_delta(changes.values(), version)
                )
            if not live.welcomed:
                live.backlog.append(frame)
                continue
            await self.send(live, frame)
        if self.on_delivered is not None:
            self.on_delivered(asyncio.get_running_loop().time() - queued_at)

    def stop(self) -> None:
        self.stopped = True
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        for task in list(self._tasks):
            task.cancel()
