"""What the running agent publishes for ``agent status``, and how ``status`` reads it."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection

from tests.agent.conftest import FakeServer, Handler, fake_enrollment, saved_runner
from tests.agent.test_cli import invoke
from tests.agent.test_runner_fake_server import PEER_KEY, nothing_listens, welcome
from tests.support.waiting import eventually
from wiremesh.agent.state import save_enrollment
from wiremesh.agent.status import STATUS_FILE, AgentStatus, read_status, render_status
from wiremesh.protocol import Peer

StartServer = Callable[[Handler], Awaitable[FakeServer]]
PEER = Peer(
    peer_id="p1",
    hostname="db",
    virtual_ip="10.0.0.2",
    public_key=PEER_KEY,
    endpoint="192.0.2.1:51820",
    online=True,
)


def published(state_dir: Path) -> dict[str, Any]:
    data = read_status(state_dir)
    assert data is not None
    return data


async def test_the_agent_publishes_connected_with_its_peers_then_stopped(
    fake_server: StartServer, state_dir: Path
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(welcome(peers=[PEER]))
        await ws.wait_closed()

    fake = await fake_server(script)
    runner = saved_runner(fake.url, state_dir)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: (read_status(state_dir) or {}).get("connection") == "connected")
        data = published(state_dir)
        assert data["pid"] == os.getpid()
        assert data["server"] == fake.url
        assert isinstance(data["last_contact_age"], float)
        [peer] = data["peers"]
        assert (peer["hostname"], peer["virtual_ip"]) == ("db", "10.0.0.2")
        assert peer["online"] is True
        # no relay and no handshake yet: nothing carries the peer
        assert (peer["path"], peer["endpoint"], peer["last_handshake"]) == ("none", None, None)
        mode = stat.S_IMODE((state_dir / STATUS_FILE).stat().st_mode)
        assert mode == 0o600
    finally:
        runner.stop()
    await asyncio.wait_for(task, 5)
    data = published(state_dir)
    assert data["connection"] == "stopped"
    assert data["peers"] == []


async def test_a_refused_device_is_published_with_the_reason(
    fake_server: StartServer, state_dir: Path
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.close(4004, "device revoked")

    fake = await fake_server(script)
    await asyncio.wait_for(saved_runner(fake.url, state_dir).run(), 5)
    data = published(state_dir)
    assert data["connection"] == "refused"
    assert "device revoked (4004)" in str(data["reason"])


async def test_an_unreachable_server_is_published_as_disconnected(state_dir: Path) -> None:
    url = nothing_listens()
    runner = saved_runner(url, state_dir)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: (read_status(state_dir) or {}).get("connection") == "disconnected")
        data = published(state_dir)
        assert f"cannot connect to {url}" in str(data["reason"])
    finally:
        runner.stop()
    await asyncio.wait_for(task, 5)


def test_a_status_left_by_a_dead_process_reads_as_stopped(state_dir: Path) -> None:
    state_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    status = AgentStatus(pid=int(dead.stdout), connection="connected", server="http://x")
    status.write(state_dir)
    data = published(state_dir)
    assert data["connection"] == "stopped"
    assert data["reason"] == "the agent process is not running"


def test_no_status_file_or_a_damaged_one_reads_as_none(state_dir: Path) -> None:
    state_dir.mkdir()
    assert read_status(state_dir) is None
    (state_dir / STATUS_FILE).write_text("{damaged")
    assert read_status(state_dir) is None
    assert render_status(None) == ["agent:      has not run with this state dir"]


def test_render_shows_each_peer_with_path_handshake_age_and_bytes() -> None:
    now = 1_800_000_000.0
    data = {
        "connection": "connected",
        "since": now - 30,
        "server": "https://mesh.example",
        "last_contact": now - 1,
        "peers": [
            {
                "peer_id": "p1", "hostname": "db", "virtual_ip": "100.64.0.2", "online": True,
                "path": "direct", "endpoint": "198.18.0.21:51820",
                "last_handshake": now - 12, "rx_bytes": 2048, "tx_bytes": 100,
            },
            {
                "peer_id": "p2", "hostname": None, "virtual_ip": "100.64.0.3", "online": False,
                "path": "relay", "endpoint": "198.18.0.11:3478",
                "last_handshake": None, "rx_bytes": 0, "tx_bytes": 0,
            },
        ],
    }  # fmt: skip
    lines = render_status(data, now)
    assert lines[0].startswith("agent:      connected since ")
    assert lines[0].endswith("(30 s ago)")
    assert "server:     https://mesh.example" in lines
    header, first, second = lines[-3:]
    assert header.split() == [
        "PEER", "VIRTUAL", "IP", "ONLINE", "PATH", "ENDPOINT", "HANDSHAKE", "RX", "TX"
    ]  # fmt: skip
    assert first.split() == [
        "db", "100.64.0.2", "yes", "direct", "198.18.0.21:51820", "12", "s", "ago",
        "2.0", "KiB", "100", "B",
    ]  # fmt: skip
    assert second.split()[:6] == ["p2", "100.64.0.3", "no", "relay", "198.18.0.11:3478", "never"]


def test_the_status_command_adds_the_live_report(state_dir: Path) -> None:
    enrollment, keys = fake_enrollment("http://127.0.0.1:9")
    save_enrollment(state_dir, enrollment, keys.private_key)
    AgentStatus(connection="connected", server="http://127.0.0.1:9").write(state_dir)
    text = invoke("status", "--state-dir", str(state_dir))
    assert "agent:      connected since" in text.output
    data = json.loads(invoke("status", "--state-dir", str(state_dir), "--json").stdout)
    assert data["agent"]["connection"] == "connected"
    assert data["agent"]["pid"] == os.getpid()
