"""``wiremesh agent status`` as a person reads it, beside real agents in each state.

Two agents with wireguard-go on machines of the lab; ``python -m wiremesh.agent status``
runs on the agent's machine, as a separate process reading what the running agent
publishes. One scenario, in steps: both connected (m1 shows m2 direct, at its underlay
endpoint, with a handshake and bytes), m2's device revoked (m2 shows the refusal and why),
the server stopped (m1 shows it disconnected, its peer still listed), m1 stopped with
SIGTERM, then an agent killed outright (the status it left reads as stopped).
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest

from tests.netns.mesh import PYTHON, Agent, Mesh, configured, mesh_pings, ping
from tests.support.waiting import eventually

pytestmark = pytest.mark.netns

WIREGUARD_PATHS = ("direct", "local")
"""A peer reached straight over WireGuard: at its public address, or (both machines on
one subnet, as here) at its LAN address."""


async def _status(agent: Agent, *options: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *agent.machine.argv(
            PYTHON, "-m", "wiremesh.agent", "status", "--state-dir", str(agent.state_dir),
            *options,
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, errors = await process.communicate()
    assert process.returncode == 0, errors.decode()
    return output.decode()


async def _live(agent: Agent) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(await _status(agent, "--json"))["agent"]
    assert report is not None, "the agent published nothing"
    return report


async def _reaches(agent: Agent, connection: str, seconds: float = 20) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        report = await _live(agent)
        return report if report["connection"] == connection else None

    return await eventually(probe, seconds, f"{agent.name} reports {connection}", interval=0.2)


async def test_status_in_each_state_of_a_real_agent(mesh: Mesh) -> None:
    one = await mesh.enroll("m1", mesh.lab.machine(1))
    two = await mesh.enroll("m2", mesh.lab.machine(2))
    for agent in (one, two):
        agent.start()
    await configured(one, [two])
    await configured(two, [one])
    await mesh_pings([(one, two), (two, one)], seconds=15)

    # -- Connected: the server, its last contact, m2 direct with a handshake and traffic.
    async def m2_direct() -> dict[str, Any] | None:
        report = await _live(one)
        peers = report["peers"]
        if report["connection"] != "connected" or len(peers) != 1:
            return None
        peer = peers[0]
        return report if peer["path"] in WIREGUARD_PATHS and peer["rx_bytes"] > 0 else None

    report = await eventually(m2_direct, 20, "m1 reports m2 reached, with traffic", interval=0.2)
    [peer] = report["peers"]
    assert report["server"] == mesh.url
    assert 0 <= report["last_contact_age"] < 10
    assert peer["hostname"] == "m2"
    assert peer["virtual_ip"] == two.virtual_ip
    assert peer["online"] is True
    assert peer["endpoint"] == f"{two.machine.address}:51820"
    assert peer["last_handshake"] is not None
    assert peer["tx_bytes"] > 0
    text = await _status(one)
    assert "agent:      connected since" in text
    assert f"server:     {mesh.url}" in text
    row = next(line.split() for line in text.splitlines() if line.strip().startswith("m2 "))
    endpoint = f"{two.machine.address}:51820"
    assert row[:5] == ["m2", two.virtual_ip, "yes", peer["path"], endpoint], text
    assert "never" not in row

    # -- Revoked: m2's agent exits for good, and its status says why and what to do.
    devices = await mesh.devices()
    await mesh.api("POST", f"/orgs/{mesh.org_id}/devices/{devices['m2']['id']}/revoke")
    assert await two.process.exit_code(20) == 3
    refused = await _live(two)
    assert refused["connection"] == "refused"
    assert "device revoked (4004)" in refused["reason"]
    assert refused["peers"] == []
    text = await _status(two)
    assert "agent:      refused since" in text
    assert "reason:     the server refused this device: device revoked (4004)" in text
    assert "enroll again with a new setup key" in text
    assert "peers:" not in text

    # -- Server down: m1 reports it disconnected, with the reason, and keeps its peers.
    three = await mesh.enroll("m3", mesh.lab.machine(3))
    three.start()
    await configured(one, [three])
    await mesh_pings([(one, three)], seconds=15)
    await mesh.server.stop()
    down = await _reaches(one, "disconnected")
    assert down["reason"], down
    assert [peer["hostname"] for peer in down["peers"]] == ["m3"]
    text = await _status(one)
    assert "agent:      disconnected since" in text
    assert "reason:     " in text
    assert any(line.strip().startswith("m3 ") for line in text.splitlines())
    assert await ping(one.machine, three.virtual_ip, wait=2)  # the mesh goes on meanwhile

    # -- Stopped with SIGTERM: the agent says so on its way out.
    one.process.send(signal.SIGTERM)
    assert await one.process.exit_code(20) == 0
    stopped = await _live(one)
    assert stopped["connection"] == "stopped"
    assert stopped["peers"] == []
    assert "agent:      stopped since" in await _status(one)

    # -- Killed: the report it left names a process that is gone, so it reads as stopped.
    three.process.kill()
    await three.process.exit_code(10)
    killed = await _live(three)
    assert killed["connection"] == "stopped"
    assert killed["reason"] == "the agent process is not running"
    assert "the agent process is not running" in await _status(three)
