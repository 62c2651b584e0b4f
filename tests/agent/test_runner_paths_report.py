"""The agent reports its paths to a version 3 server, and to no older one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tests.agent.test_runner_fake_server import PEER_KEY, StartServer, runner_for, welcome
from tests.support.waiting import eventually
from wiremesh.agent.memory import MemoryBackend
from wiremesh.protocol import Peer

PEER = Peer(peer_id="p1", virtual_ip="10.0.0.2", public_key=PEER_KEY, endpoint="192.0.2.1:5")


async def _record(ws: ServerConnection, frames: list[dict[str, Any]], version: int) -> None:
    await ws.recv()  # auth
    await ws.send(welcome(peers=[PEER], version=version))
    try:
        while True:
            frames.append(json.loads(await ws.recv()))
    except ConnectionClosed:
        pass


async def test_a_full_report_after_a_v3_welcome_then_a_delta_when_a_path_changes(
    fake_server: StartServer,
) -> None:
    frames: list[dict[str, Any]] = []

    async def script(ws: ServerConnection, n: int) -> None:
        await _record(ws, frames, version=3)

    fake = await fake_server(script)
    backend = MemoryBackend()
    runner = runner_for(fake, backend)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: len(frames) >= 1)
        first = frames[0]
        assert first == {
            "type": "paths",
            "full": True,
            "paths": [{"peer_id": "p1", "path": "none", "endpoint": None, "last_handshake": None}],
        }
        # WireGuard completes a handshake with the peer: it is direct from the next tick.
        handshake = time.time()
        backend.state[PEER_KEY] = dataclasses.replace(
            backend.state[PEER_KEY], latest_handshake=handshake
        )
        await eventually(lambda: len(frames) >= 2)
        assert frames[1] == {
            "type": "paths",
            "full": False,
            "paths": [
                {
                    "peer_id": "p1",
                    "path": "direct",
                    "endpoint": "192.0.2.1:5",
                    "last_handshake": handshake,
                }
            ],
        }
        await asyncio.sleep(1.5)  # nothing moved: nothing more is said
        assert len(frames) == 2
    finally:
        runner.stop()
        await asyncio.wait_for(task, 5)


async def test_no_report_to_a_version_2_server(fake_server: StartServer) -> None:
    frames: list[dict[str, Any]] = []

    async def script(ws: ServerConnection, n: int) -> None:
        await _record(ws, frames, version=2)

    fake = await fake_server(script)
    runner = runner_for(fake)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: runner.sessions == 1)
        await asyncio.sleep(1.5)  # three path ticks
        assert [peer.path for peer in runner.status.peers] == ["none"]  # the agent knows
    finally:
        runner.stop()
        await asyncio.wait_for(task, 5)
    assert [frame for frame in frames if frame["type"] == "paths"] == []
