"""The broadcast wakes the watchers of the orgs a batch of events concerns, after applying it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from wiremesh.server.events.broadcast import EventBroadcast
from wiremesh.server.events.schemas import AnyEvent, SessionEnded


def ended(org_id: int) -> SessionEnded:
    return SessionEnded(
        org_id=org_id, peer_id="p", connection_id=uuid.uuid4(), server_id=None, reason="x"
    )


async def test_only_the_changed_orgs_watchers_wake_and_after_the_hub_applied() -> None:
    broadcast = EventBroadcast()
    order: list[str] = []

    async def hub(events: Sequence[AnyEvent]) -> None:
        order.append("hub")

    apply = broadcast.chain(hub)
    with broadcast.watch(1) as first, broadcast.watch(2) as second:
        assert broadcast.watching(1) == 1
        await apply([ended(1)])
        assert order == ["hub"]
        assert first.is_set()
        assert not second.is_set()
    assert broadcast.watching(1) == 0
    await apply([ended(1)])  # nobody watches: nothing to wake, nothing kept
    assert broadcast.watching(1) == 0
