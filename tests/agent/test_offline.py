"""The last known peers while no session is live: configured once, then moved on a tick."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.protocol.helpers import wg_key
from wiremesh.agent.offline import OfflinePeers
from wiremesh.agent.paths import PathSelector
from wiremesh.agent.peercache import PEER_CACHE_FILE
from wiremesh.protocol import Peer, Relay

PEER = Peer(peer_id="p1", virtual_ip="100.64.0.2", public_key=wg_key(1), online=True)


class Reconciles:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def __call__(self, peers: Mapping[str, Peer], relays: Sequence[Relay]) -> None:
        self.calls.append(sorted(peers))


async def test_nothing_known_keeps_nothing_configured_and_no_tick(tmp_path: Path) -> None:
    reconciles = Reconciles()
    offline = OfflinePeers(reconciles, PathSelector(), interval=0.5, state_dir=tmp_path)
    offline.load()
    await offline.go_offline(100.0, never_connected=True)
    assert not offline.offline
    assert offline.until_tick(100.0) is None
    assert reconciles.calls == []


async def test_remembered_peers_are_cached_configured_when_offline_and_ticked(
    tmp_path: Path,
) -> None:
    reconciles = Reconciles()
    offline = OfflinePeers(reconciles, PathSelector(), interval=0.5, state_dir=tmp_path, owner="me")
    offline.remember({"p1": PEER}, [])
    assert (tmp_path / PEER_CACHE_FILE).exists()

    await offline.go_offline(100.0, never_connected=False)
    assert offline.offline
    assert reconciles.calls == [["p1"]]
    await offline.go_offline(100.1, never_connected=False)  # once per outage
    assert reconciles.calls == [["p1"]]

    until = offline.until_tick(100.2)
    assert until is not None
    assert 0.29 < until < 0.31
    await offline.tick(100.2)  # not due yet
    assert len(reconciles.calls) == 1
    await offline.tick(100.5)
    assert len(reconciles.calls) == 2
    assert offline.until_tick(100.5) == 0.5

    offline.online()
    await offline.tick(200.0)
    assert len(reconciles.calls) == 2
    assert offline.until_tick(200.0) is None


async def test_a_cache_on_disk_is_what_is_known_at_start(tmp_path: Path) -> None:
    first = OfflinePeers(Reconciles(), PathSelector(), interval=0.5, state_dir=tmp_path, owner="me")
    first.remember({"p1": PEER}, [])
    selector = PathSelector()
    reconciles = Reconciles()
    restarted = OfflinePeers(reconciles, selector, interval=0.5, state_dir=tmp_path, owner="me")
    restarted.load()
    assert restarted.known is not None
    assert set(restarted.known.peers) == {"p1"}
    await restarted.go_offline(0.0, never_connected=True)
    assert reconciles.calls == [["p1"]]
