"""The agent's session loop against scripted WebSocket servers: every close path, failover."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from tests.agent.conftest import FakeServer, Handler, fake_enrollment, saved_runner
from tests.support.ports import free_port
from tests.support.waiting import eventually
from wiremesh import __version__
from wiremesh.agent.backend import DeviceConfig, PeerChange
from wiremesh.agent.lan import lan_candidates
from wiremesh.agent.memory import MemoryBackend
from wiremesh.agent.runner import AgentRunner, BackendError, Backoff, Refused
from wiremesh.agent.state import set_server_urls
from wiremesh.protocol import (
    Device,
    Heartbeat,
    Peer,
    PeersDeltaMessage,
    PeerUpsert,
    PingMessage,
    WelcomeMessage,
    encode,
)

StartServer = Callable[[Handler], Awaitable[FakeServer]]
PEER_KEY = "P" * 42 + "A="


def welcome(
    *,
    interval: float = 5.0,
    timeout: float = 10.0,
    virtual_ip: str = "10.0.0.1",
    peers: list[Peer] | None = None,
    version: int = 2,
) -> str:
    """A welcome; version 2 unless a test is about paths reports, so that scripts reading
    the agent's frames see no ``paths`` among them."""
    return encode(
        WelcomeMessage(
            version=version,
            connection_id=uuid.uuid4(),
            device=Device(peer_id="self", virtual_ip=virtual_ip, network="10.0.0.0/24"),
            heartbeat=Heartbeat(interval=interval, timeout=timeout),
            peers=peers or [],
        )
    )


class RecordingRandom(random.Random):
    """Always waits the shortest time, and remembers the longest it could have waited."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ceilings: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.ceilings.append(b)
        return a


def runner_for(
    fake: FakeServer,
    backend: MemoryBackend | None = None,
    *,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
    **kwargs: Any,
) -> AgentRunner:
    return runner_for_servers([fake.url], backend, backoff=backoff, rng=rng, **kwargs)


def runner_for_servers(
    urls: list[str],
    backend: MemoryBackend | None = None,
    *,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
    **kwargs: Any,
) -> AgentRunner:
    enrollment, keys = fake_enrollment(*urls)
    return AgentRunner(
        enrollment,
        keys.private_key,
        backend or MemoryBackend(),
        listen_port=51999,
        backoff=backoff or Backoff(base=0.01, cap=0.05),
        rng=rng,
        **kwargs,
    )


async def run_until(runner: AgentRunner, condition: Callable[[], bool]) -> Refused | None:
    """Run the agent until ``condition`` holds, then stop it; what run() returned."""
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: condition() or task.done())
    finally:
        runner.stop()
    return await asyncio.wait_for(task, 5)


async def test_auth_carries_the_credential_the_listen_port_and_the_agent_version(
    fake_server: StartServer,
) -> None:
    frames: list[dict[str, Any]] = []

    async def script(ws: ServerConnection, n: int) -> None:
        frames.append(json.loads(await ws.recv()))
        await ws.send(welcome())

    fake = await fake_server(script)
    runner = runner_for(fake)
    assert await run_until(runner, lambda: runner.sessions == 1) is None
    assert frames == [
        {
            "type": "auth",
            "version": 3,
            "credential": "wmd_fake_credential",
            "listen_port": 51999,
            "candidates": lan_candidates(51999, "100.64.0.0/24"),
            "agent_version": __version__,
        }
    ]
    assert fake.close_codes == [1000]


async def test_pings_get_matching_pongs_and_peers_reach_the_backend(
    fake_server: StartServer,
) -> None:
    pongs: list[dict[str, Any]] = []
    peer = Peer(peer_id="p1", virtual_ip="10.0.0.2", public_key=PEER_KEY, endpoint="192.0.2.1:5")

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome())
        for seq in (1, 2):
            await ws.send(encode(PingMessage(seq=seq)))
            pongs.append(json.loads(await ws.recv()))
        await ws.send(encode(PeersDeltaMessage(changes=[PeerUpsert(peer=peer)])))
        await ws.wait_closed()

    fake = await fake_server(script)
    backend = MemoryBackend()
    runner = runner_for(fake, backend)
    await run_until(runner, lambda: bool(backend.state))
    assert pongs == [{"type": "pong", "seq": 1}, {"type": "pong", "seq": 2}]
    assert backend.applied[0].public_key == PEER_KEY
    assert backend.torn_down
    assert fake.close_codes == [1000]


async def test_a_silent_server_is_dropped_with_heartbeat_timeout_then_reconnected(
    fake_server: StartServer,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(interval=0.1, timeout=0.3))
        await ws.wait_closed()  # say nothing more

    fake = await fake_server(script)
    runner = runner_for(fake)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await run_until(runner, lambda: fake.connections >= 2)
    assert fake.close_codes[0] == 4006
    assert loop.time() - started < 2.0


async def test_a_dead_link_is_not_given_the_full_close_timeout(
    fake_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """After its heartbeat timeout the agent sends its close frame but does not wait 5 s
    for an answer that a dead link never gives: it retries within a second."""
    caplog.set_level(logging.INFO, logger="wiremesh.agent")

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(interval=0.1, timeout=0.3))
        if n == 0:
            ws.transport.pause_reading()  # like a dead link: nothing is read or answered
            await asyncio.sleep(2.5)
            ws.transport.resume_reading()
        await ws.wait_closed()

    fake = await fake_server(script)
    runner = runner_for(fake, close_timeout=5.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await run_until(runner, lambda: fake.connections >= 2)
    assert loop.time() - started < 2.0
    assert "the server went silent: dropping the connection" in caplog.text


async def test_a_suspended_agent_says_so_instead_of_blaming_the_server(
    fake_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP then SIGCONT: the wait ends seconds after it was due. Blocking the event loop
    has the same effect on the agent's clock (the fake server is frozen with it)."""
    caplog.set_level(logging.INFO, logger="wiremesh.agent")

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(interval=0.5, timeout=1.0))
        if n == 0:
            asyncio.get_running_loop().call_later(0.2, time.sleep, 3.0)
        await ws.wait_closed()

    fake = await fake_server(script)
    runner = runner_for(fake)
    await run_until(runner, lambda: fake.connections >= 2)
    assert fake.close_codes[0] == 4006
    assert re.search(r"the agent was suspended for [23] s: dropping the connection", caplog.text)
    assert "the server went silent" not in caplog.text


async def test_no_welcome_in_time_is_an_auth_timeout(fake_server: StartServer) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.wait_closed()

    fake = await fake_server(script)
    runner = runner_for(fake, welcome_timeout=0.2)
    await run_until(runner, lambda: fake.connections >= 2)
    assert fake.close_codes[0] == 4009


async def test_a_malformed_frame_is_closed_with_4000_and_the_agent_retries(
    fake_server: StartServer,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome())
        await ws.send('{"type": "ping", "seq": "1"}')
        await ws.wait_closed()

    fake = await fake_server(script)
    runner = runner_for(fake)
    await run_until(runner, lambda: fake.connections >= 2)
    assert fake.close_codes[0] == 4000


@pytest.mark.parametrize("code", [4003, 4004, 4008])
async def test_closes_that_retrying_cannot_fix_end_the_run(
    fake_server: StartServer, code: int
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.close(code, "go away")

    fake = await fake_server(script)
    backend = MemoryBackend()
    refused = await asyncio.wait_for(runner_for(fake, backend).run(), 5)
    assert refused == Refused(code, "go away")
    assert fake.connections == 1
    assert backend.torn_down


def test_refusal_messages_say_what_to_do() -> None:
    assert "revoked" in Refused(4004, "device revoked").message
    assert "--force" in Refused(4003, "authentication failed").message
    assert "upgrade" in Refused(4008, "unsupported protocol version").message


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1012, 4005, 4006, 4999])
async def test_other_closes_are_retried(fake_server: StartServer, code: int) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        if n == 0:
            await ws.close(code)
        else:
            await ws.send(welcome())

    fake = await fake_server(script)
    runner = runner_for(fake)
    assert await run_until(runner, lambda: runner.sessions == 1) is None
    assert fake.connections == 2


async def test_an_unsupported_welcome_version_ends_the_run(fake_server: StartServer) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        frame = json.loads(welcome())
        frame["version"] = 4
        await ws.send(json.dumps(frame))
        await ws.wait_closed()

    fake = await fake_server(script)
    refused = await asyncio.wait_for(runner_for(fake).run(), 5)
    assert refused is not None
    assert refused.code == 4008
    assert fake.close_codes == [4008]


async def test_a_welcome_with_another_address_reconfigures_the_interface(
    fake_server: StartServer,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(virtual_ip="10.0.0.9"))

    fake = await fake_server(script)
    backend = MemoryBackend()
    runner = runner_for(fake, backend)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.sessions == 1)
    assert backend.device is not None
    assert str(backend.device.address) == "10.0.0.9/24"
    runner.stop()
    assert await task is None


async def test_backoff_grows_while_sessions_are_short_and_resets_after_a_long_one(
    fake_server: StartServer,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome())
        if n == 3:
            await asyncio.sleep(0.3)  # longer than reset_after
        if n < 4:
            await ws.close(1012)

    fake = await fake_server(script)
    rng = RecordingRandom()
    backoff = Backoff(base=0.01, cap=0.03, reset_after=0.2)
    runner = runner_for(fake, backoff=backoff, rng=rng)
    await run_until(runner, lambda: fake.connections == 5 and runner.sessions == 5)
    assert rng.ceilings == [0.01, 0.02, 0.03, 0.01]


async def test_an_unreachable_server_is_retried_until_stopped(
    fake_server: StartServer,
) -> None:
    fake = await fake_server(lambda ws, n: ws.wait_closed())
    fake.url = "http://127.0.0.1:9"  # discard port: nothing listens
    rng = RecordingRandom()
    backend = MemoryBackend()
    runner = runner_for(fake, backend, rng=rng)
    assert await run_until(runner, lambda: len(rng.ceilings) >= 3) is None
    assert backend.torn_down
    assert fake.connections == 0


async def test_a_stop_during_a_long_backoff_returns_at_once(fake_server: StartServer) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.close(1012)

    fake = await fake_server(script)
    runner = runner_for(fake, backoff=Backoff(base=60, cap=60), rng=random.Random(1))
    task = asyncio.create_task(runner.run())
    await eventually(lambda: fake.connections == 1)
    await asyncio.sleep(0.1)
    runner.stop()
    assert await asyncio.wait_for(task, 1) is None


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=30)
    assert [backoff.ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.ceiling(10_000) == 30


def test_backoff_delays_are_fully_jittered() -> None:
    backoff = Backoff(base=1, cap=8)
    rng = random.Random(42)
    delays = [backoff.delay(3, rng) for _ in range(200)]
    assert all(0 <= delay <= 8 for delay in delays)
    assert min(delays) < 1
    assert max(delays) > 7


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 2, "cap": 1}, {"reset_after": -1}])
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(**kwargs)


class BrokenBackend(MemoryBackend):
    async def apply(self, changes: list[PeerChange]) -> None:
        raise OSError(1, "Operation not permitted")


async def test_a_backend_failure_stops_the_agent_and_closes_with_1011(
    fake_server: StartServer,
) -> None:
    peer = Peer(peer_id="p1", virtual_ip="10.0.0.2", public_key=PEER_KEY)

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(peers=[peer]))
        await ws.wait_closed()

    fake = await fake_server(script)
    backend = BrokenBackend()
    with pytest.raises(BackendError, match=r"could not apply peer changes: .*not permitted"):
        await asyncio.wait_for(runner_for(fake, backend).run(), 5)
    assert backend.torn_down
    await eventually(lambda: fake.close_codes == [1011])


async def test_cancelling_the_agent_closes_with_1001_and_tears_down(
    fake_server: StartServer,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome())
        await ws.wait_closed()

    fake = await fake_server(script)
    backend = MemoryBackend()
    runner = runner_for(fake, backend)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.sessions == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.torn_down
    await eventually(lambda: fake.close_codes == [1001])


class PortHoppingBackend(MemoryBackend):
    """Binds another port at every setup, like a backend whose port was taken."""

    setups = 0

    async def setup(self, device: DeviceConfig) -> None:
        await super().setup(device)
        self.setups += 1
        self._listen_port = 40000 + self.setups


async def test_a_new_listen_port_is_announced_with_an_endpoint_message(
    fake_server: StartServer,
) -> None:
    frames: list[dict[str, Any]] = []

    async def script(ws: ServerConnection, n: int) -> None:
        frames.append(json.loads(await ws.recv()))
        await ws.send(welcome(virtual_ip="10.0.0.9"))  # forces a second setup
        frames.append(json.loads(await ws.recv()))

    fake = await fake_server(script)
    runner = runner_for(fake, PortHoppingBackend())
    await run_until(runner, lambda: len(frames) == 2)
    assert frames[0]["listen_port"] == 40001
    assert frames[1] == {"type": "endpoint", "listen_port": 40002}


# ---------------------------------------------------------------- several servers


def nothing_listens() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def welcome_and_stay(ws: ServerConnection, n: int) -> None:
    await ws.recv()
    await ws.send(welcome())
    await ws.wait_closed()


async def test_an_unreachable_server_is_skipped_without_waiting(
    fake_server: StartServer,
) -> None:
    fake = await fake_server(welcome_and_stay)
    rng = RecordingRandom()
    runner = runner_for_servers([nothing_listens(), fake.url], rng=rng)
    assert await run_until(runner, lambda: runner.sessions == 1) is None
    assert runner.servers.current == fake.url
    assert rng.ceilings == []  # no backoff: one server of two failed


@pytest.mark.parametrize("ending", ["server going away", "connection lost"])
async def test_a_session_that_ends_moves_to_the_next_server_at_once(
    fake_server: StartServer, ending: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wiremesh.agent")

    async def first(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome())
        if ending == "server going away":
            await ws.close(1001, "server shutting down")
        else:
            ws.transport.abort()  # no close frame: as when the process dies

    server_a = await fake_server(first)
    server_b = await fake_server(welcome_and_stay)
    rng = RecordingRandom()
    runner = runner_for_servers([server_a.url, server_b.url], rng=rng)
    assert await run_until(runner, lambda: runner.sessions == 2) is None
    assert (server_a.connections, server_b.connections) == (1, 1)
    assert rng.ceilings == []
    assert f"trying the next server, {server_b.url}" in caplog.text
    assert f"server {server_b.url}" in caplog.text  # the "connected" line names it


async def test_every_welcome_starts_a_new_round(fake_server: StartServer) -> None:
    async def going_away_once(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome())
        if n == 0:
            await ws.close(1001)
        else:
            await ws.wait_closed()

    server_a = await fake_server(going_away_once)
    server_b = await fake_server(going_away_once)
    rng = RecordingRandom()
    runner = runner_for_servers([server_a.url, server_b.url], rng=rng)
    assert await run_until(runner, lambda: runner.sessions == 3) is None
    # A, then B, then A again: each ended after a welcome, so none completed a round.
    assert (server_a.connections, server_b.connections) == (2, 1)
    assert rng.ceilings == []


@pytest.mark.parametrize("code", [4003, 4004, 4008])
async def test_a_final_refusal_is_not_taken_to_the_next_server(
    fake_server: StartServer, code: int
) -> None:
    async def refuse(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.close(code, "go away")

    server_a = await fake_server(refuse)
    server_b = await fake_server(welcome_and_stay)
    runner = runner_for_servers([server_a.url, server_b.url])
    assert await asyncio.wait_for(runner.run(), 5) == Refused(code, "go away")
    assert server_b.connections == 0


async def test_the_backoff_comes_after_each_round_of_servers_not_after_each_server(
    fake_server: StartServer,
) -> None:
    async def restart(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.close(1012)

    servers = [await fake_server(restart) for _ in range(2)]

    class CountingRandom(RecordingRandom):
        """Remembers how often each server was tried when a backoff was drawn."""

        def __init__(self) -> None:
            super().__init__()
            self.tried: list[tuple[int, int]] = []

        def uniform(self, a: float, b: float) -> float:
            self.tried.append((servers[0].connections, servers[1].connections))
            return super().uniform(a, b)

    rng = CountingRandom()
    runner = runner_for_servers(
        [server.url for server in servers], backoff=Backoff(base=0.01, cap=0.03), rng=rng
    )
    await run_until(runner, lambda: len(rng.ceilings) >= 3)
    assert rng.tried[:3] == [(1, 1), (2, 2), (3, 3)]
    assert rng.ceilings[:3] == [0.01, 0.02, 0.03]  # growing from round to round


async def test_a_changed_server_list_is_used_from_the_next_reconnect(
    fake_server: StartServer, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wiremesh.agent")
    leave = asyncio.Event()

    async def until_told(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome())
        await leave.wait()
        await ws.close(1012)

    server_a = await fake_server(until_told)
    server_b = await fake_server(welcome_and_stay)
    runner = saved_runner(server_a.url, state_dir)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: runner.sessions == 1)
        set_server_urls(state_dir, [server_b.url])
        await asyncio.sleep(0.2)  # a working session is not cut for a new list
        assert (runner.sessions, server_a.close_codes) == (1, [])
        leave.set()
        await eventually(lambda: runner.sessions == 2)
    finally:
        runner.stop()
        assert await asyncio.wait_for(task, 5) is None
    assert (server_a.connections, server_b.connections) == (1, 1)
    assert runner.servers.urls == (server_b.url,)
    assert f"the server list changed to {server_b.url}" in caplog.text


async def test_an_unreadable_state_file_keeps_the_list_it_had(
    fake_server: StartServer, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def restart_once(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome())
        if n == 0:
            await ws.close(1012)

    fake = await fake_server(restart_once)
    runner = saved_runner(fake.url, state_dir)
    (state_dir / "agent.json").write_text("{damaged")
    assert await run_until(runner, lambda: runner.sessions == 2) is None
    assert runner.servers.urls == (fake.url,)
    assert caplog.text.count("cannot read the server list again") == 1
