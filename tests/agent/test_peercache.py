"""The peer cache: written only on change, 0600, ignored when unusable; and the session loop
configuring it when the server cannot be reached at start, until a welcome replaces it."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection

import wiremesh.agent.paths
from tests.agent.conftest import fake_enrollment
from tests.agent.test_runner_fake_server import (
    PEER_KEY,
    StartServer,
    nothing_listens,
    run_until,
    welcome,
)
from wiremesh.agent.backoff import Backoff
from wiremesh.agent.memory import MemoryBackend
from wiremesh.agent.peercache import (
    PEER_CACHE_FILE,
    KnownPeers,
    PeerCache,
    describe,
    load_peer_cache,
)
from wiremesh.agent.runner import AgentRunner
from wiremesh.agent.state import save_enrollment
from wiremesh.protocol import Candidate, Peer, Relay

OTHER_KEY = "Q" * 42 + "A="
RELAY = Relay(name="r1", public_key="R" * 42 + "A=", endpoint="192.0.2.30:3478")
PEER = Peer(
    peer_id="p1",
    hostname="beta",
    virtual_ip="10.0.0.2",
    public_key=PEER_KEY,
    online=True,
    candidates=[
        Candidate(addr="192.0.2.1:51820", kind="public"),
        Candidate(addr="192.0.2.9:51820", kind="lan"),
    ],
)
KNOWN = KnownPeers({"p1": PEER}, (RELAY,), "198.51.100.7")


def test_the_cache_comes_back_as_it_was_saved_readable_by_the_owner_only(tmp_path: Path) -> None:
    PeerCache(tmp_path, "self").save(KNOWN)
    path = tmp_path / PEER_CACHE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_peer_cache(tmp_path, "self")
    assert loaded == KNOWN
    assert loaded is not None
    assert loaded.saved_at is not None
    assert describe(loaded).startswith("1 peer and 1 relay cached ")


def test_the_cache_is_written_only_when_it_changed(tmp_path: Path) -> None:
    cache = PeerCache(tmp_path, "self")
    cache.save(KNOWN)
    cache.save(KnownPeers(dict(KNOWN.peers), KNOWN.relays, KNOWN.public_ip))
    assert cache.writes == 1
    cache.save(KnownPeers({"p1": PEER.model_copy(update={"online": False})}, (RELAY,), None))
    assert cache.writes == 2
    assert json.loads((tmp_path / PEER_CACHE_FILE).read_text())["peers"][0]["online"] is False


def test_a_cache_that_cannot_be_written_costs_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = PeerCache(tmp_path / "missing", "self")
    cache.save(KNOWN)
    assert cache.writes == 0
    assert "cannot save the peer cache" in caplog.text


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "cannot read it"),
        ('["a list"]', "not a format 1 peer cache"),
        ('{"format": 9, "peer_id": "self"}', "not a format 1 peer cache"),
        (
            '{"format": 1, "peer_id": "someone-else", "peers": [], "relays": [], "saved_at": 1}',
            "another enrollment",
        ),
        ('{"format": 1, "peer_id": "self", "relays": [], "saved_at": 1}', "peers"),
        (
            '{"format": 1, "peer_id": "self", "peers": [{"peer_id": "p1"}], "relays": [],'
            ' "saved_at": 1}',
            "validation error",
        ),
        ('{"format": 1, "peer_id": "self", "peers": [], "relays": []}', "saved_at"),
    ],
)
def test_an_unusable_cache_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, why: str
) -> None:
    (tmp_path / PEER_CACHE_FILE).write_text(content)
    assert load_peer_cache(tmp_path, "self") is None
    assert "ignoring the peer cache" in caplog.text
    assert why in caplog.text


def test_no_cache_is_no_news(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_peer_cache(tmp_path, "self") is None
    (tmp_path / PEER_CACHE_FILE).mkdir()  # unreadable as a file
    assert load_peer_cache(tmp_path, "self") is None
    assert caplog.text.count("ignoring the peer cache") == 1


# ---------------------------------------------------------------- in the session loop


def seed_cache(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    PeerCache(state_dir, "self").save(KnownPeers({"p1": PEER}))


def cached_runner(urls: list[str], state_dir: Path, backend: MemoryBackend) -> AgentRunner:
    enrollment, keys = fake_enrollment(*urls)
    save_enrollment(state_dir, enrollment, keys.private_key)
    return AgentRunner(
        enrollment,
        keys.private_key,
        backend,
        listen_port=51999,
        backoff=Backoff(base=0.05, cap=0.1),
        state_dir=state_dir,
    )


async def test_a_session_leaves_the_peers_in_the_cache(
    fake_server: StartServer, state_dir: Path
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(peers=[PEER]))
        await ws.wait_closed()

    fake = await fake_server(script)
    runner = cached_runner([fake.url], state_dir, MemoryBackend())
    await run_until(runner, lambda: runner.sessions == 1 and runner.known is not None)
    cached = load_peer_cache(state_dir, "self")
    assert cached is not None
    assert cached.peers == {"p1": PEER}


async def test_without_a_server_at_start_the_cached_peers_are_configured_and_their_paths_move(
    state_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="wiremesh.agent")
    monkeypatch.setattr(wiremesh.agent.paths, "KNOCK_SECONDS", 0.2)
    seed_cache(state_dir)
    backend = MemoryBackend()
    runner = cached_runner([nothing_listens()], state_dir, backend)

    def knocked_at_the_second_candidate() -> bool:
        state = backend.state.get(PEER_KEY)
        return state is not None and state.endpoint == "192.0.2.9:51820"

    await run_until(runner, knocked_at_the_second_candidate)
    endpoints = [getattr(change, "endpoint", None) for change in backend.applied]
    assert endpoints[0] == "192.0.2.1:51820"  # at once, the first candidate
    assert "192.0.2.9:51820" in endpoints  # knocking moved on, without a server
    assert "the server cannot be reached: configuring the last known 1 peer" in caplog.text
    assert runner.sessions == 0


async def test_a_welcome_replaces_the_cached_peers(
    fake_server: StartServer, state_dir: Path
) -> None:
    seed_cache(state_dir)
    fresh = Peer(peer_id="p2", virtual_ip="10.0.0.3", public_key=OTHER_KEY, endpoint="192.0.2.3:5")

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(peers=[fresh]))
        await ws.wait_closed()

    fake = await fake_server(script)
    backend = MemoryBackend()
    runner = cached_runner([nothing_listens(), fake.url], state_dir, backend)
    await run_until(runner, lambda: set(backend.state) == {OTHER_KEY})
    assert PEER_KEY in {change.public_key for change in backend.applied}  # was configured
    assert runner.sessions == 1
    assert not runner.offline
    cached = load_peer_cache(state_dir, "self")
    assert cached is not None
    assert set(cached.peers) == {"p2"}


async def test_a_reachable_server_at_start_never_configures_the_cache(
    fake_server: StartServer, state_dir: Path
) -> None:
    seed_cache(state_dir)

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(peers=[]))
        await ws.wait_closed()

    fake = await fake_server(script)
    backend = MemoryBackend()
    runner = cached_runner([fake.url], state_dir, backend)
    await run_until(runner, lambda: runner.sessions == 1)
    assert backend.applied == []
