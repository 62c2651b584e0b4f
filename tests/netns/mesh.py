"""The lab's mesh, driven from outside: the server, an organization, enrolled agents and
relays as processes on the lab's machines, and probes (pings, WireGuard tables, the agents'
published status). Used by the namespace tests (through the fixtures in ``conftest``) and by
the NAT paths benchmark.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.netns.lab import Lab, Machine, ping_argv
from tests.support.ports import free_port
from tests.support.processes import (
    AGENT_ENV,
    SERVER_ENV,
    Process,
    ProcessGroup,
    ServerProcess,
    clean_environ,
)
from tests.support.waiting import eventually
from wiremesh.agent.cli import EXIT_REFUSED
from wiremesh.agent.enroll import enroll
from wiremesh.agent.keys import public_key_of
from wiremesh.agent.state import load_enrollment
from wiremesh.agent.status import read_status

NETWORK = "100.64.0.0/24"
PYTHON = sys.executable
_TOKEN_LINE = re.compile(r"Its API token, shown only this once: (\S+)")


class Agent:
    """One enrolled device on one machine, and its ``agent up`` process (in ``group``)."""

    def __init__(
        self,
        lab: Lab,
        group: ProcessGroup,
        name: str,
        machine: Machine,
        state_dir: Path,
        listen_port: int | None = 51820,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.lab = lab
        self.machine = machine
        self.enrollment = load_enrollment(state_dir)
        self.state_dir = state_dir
        port = [] if listen_port is None else ["--listen-port", str(listen_port)]
        self.process = group.add(
            f"agent-{name}",
            machine.argv(
                PYTHON, "-m", "wiremesh.agent", "up", "--state-dir", str(self.state_dir),
                "--backend", "wireguard-go", "--interface", "wm0", *port, *extra_args,
            ),
            {**clean_environ(), **AGENT_ENV},
        )  # fmt: skip

    @property
    def virtual_ip(self) -> str:
        return self.enrollment.device.virtual_ip

    @property
    def public_key(self) -> str:
        key = self.enrollment.device.public_key
        assert key is not None
        return key

    def start(self) -> None:
        self.process.start()
        self.lab.record(self.process.pid)

    def log(self) -> str:
        return self.process.log()

    def mtu(self) -> int | None:
        """The MTU of wm0 on its machine (``ip link show wm0``); ``None`` when there is none."""
        result = self.machine.sh("ip", "link", "show", "dev", "wm0", check=False)
        found = re.search(r"\bmtu (\d+)", result.stdout)
        return int(found[1]) if result.returncode == 0 and found else None

    def wg_peers(self) -> set[str] | None:
        """``wg show wm0 peers`` on its machine; ``None`` when there is no wm0."""
        result = self.machine.sh("wg", "show", "wm0", "peers", check=False)
        return set(result.stdout.split()) if result.returncode == 0 else None

    def wg_endpoints(self) -> dict[str, str]:
        result = self.machine.sh("wg", "show", "wm0", "endpoints", check=False)
        pairs = (line.split("\t") for line in result.stdout.splitlines() if "\t" in line)
        return {key: endpoint for key, endpoint in pairs}

    def allowed_ips(self) -> dict[str, set[str]]:
        """``wg show wm0 allowed-ips`` on its machine: key -> its routes."""
        result = self.machine.sh("wg", "show", "wm0", "allowed-ips", check=False)
        table: dict[str, set[str]] = {}
        for line in result.stdout.splitlines():
            key, _, routes = line.partition("\t")
            table[key] = {r for r in routes.split() if r != "(none)"}
        return table

    @property
    def host_route(self) -> str:
        return f"{self.virtual_ip}/32"

    def paths(self) -> dict[str, tuple[str, str | None]]:
        """What the running agent publishes for ``agent status``: each peer's hostname ->
        (path, endpoint); empty while it has published nothing."""
        data = read_status(self.state_dir) or {}
        return {
            str(peer["hostname"]): (str(peer["path"]), peer.get("endpoint"))
            for peer in data.get("peers") or []
        }


class Mesh:
    """The server, the org and its setup key, the machines and their agents."""

    def __init__(
        self,
        lab: Lab,
        processes: ProcessGroup,
        directory: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.lab = lab
        self.processes = processes
        self.directory = directory
        env = {
            **clean_environ(),
            **SERVER_ENV,
            "WIREMESH_DATA_DIR": str(directory / "server"),
            **(extra_env or {}),
        }
        self.server = ServerProcess(
            processes, env, free_port(lab.host_address), host=lab.host_address
        )
        self.url = self.server.url
        self.token = ""
        self.org_id = 0
        self.setup_key = ""

    def state_dir(self, name: str) -> Path:
        return self.directory / "agents" / name

    async def start_server(self) -> None:
        """The server on the lab's bridge; its first start prints the administrator's token."""
        await self.server.start()
        self.lab.record(self.server.process.pid)
        match = _TOKEN_LINE.search(self.server.process.log())
        assert match is not None, self.server.process.log()
        self.token = match[1]

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(base_url=f"{self.url}/api/v1", timeout=10) as client:
            response = await client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {self.token}"}
            )
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    async def create_org(self) -> None:
        me = await self.api("GET", "/users/me")
        org = await self.api(
            "POST", "/orgs", {"name": "mesh", "network_cidr": NETWORK, "owner_user_id": me["id"]}
        )
        self.org_id = org["id"]
        key = await self.api(
            "POST", f"/orgs/{self.org_id}/setup-keys", {"name": "mesh", "reusable": True}
        )
        self.setup_key = key["key"]

    async def enroll(
        self,
        name: str,
        machine: Machine,
        listen_port: int | None = 51820,
        extra_args: Sequence[str] = (),
    ) -> Agent:
        """Enrolled from this process (the same code as the command, without its start-up);
        ``listen_port`` ``None``: the device's own, drawn at enrollment; ``extra_args`` go to
        ``agent up``."""
        await enroll(self.state_dir(name), [self.url], self.setup_key, name)
        return Agent(
            self.lab, self.processes, name, machine, self.state_dir(name), listen_port, extra_args
        )

    async def enroll_on_machine(self, name: str, machine: Machine) -> Agent:
        """``agent enroll`` run on the machine itself, as a person would."""
        state_dir = self.state_dir(name)
        process = await asyncio.create_subprocess_exec(
            *machine.argv(
                PYTHON, "-m", "wiremesh.agent", "enroll", "--server", self.url,
                "--state-dir", str(state_dir), "--hostname", name,
            ),
            env={**clean_environ(), "WIREMESH_SETUP_KEY": self.setup_key},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()
        return Agent(self.lab, self.processes, name, machine, state_dir)

    async def devices(self) -> dict[str, dict[str, Any]]:
        """The org's devices by hostname, as the API lists them."""
        items = await self.api("GET", f"/orgs/{self.org_id}/devices")
        return {item["hostname"]: item for item in items}

    async def connections(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.api(
            "GET", f"/orgs/{self.org_id}/connections?limit=1000"
        )
        return result


async def ping(machine: Machine, address: str, wait: float = 1.0) -> bool:
    """One echo request from ``machine`` to ``address``; whether the answer came in ``wait`` s."""
    process = await asyncio.create_subprocess_exec(
        *ping_argv(machine, address, wait),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait() == 0


async def first_reply(
    machine: Machine, address: str, seconds: float, wait: float = 1.0
) -> float | None:
    """Ping until a reply comes; the wall-clock time of that reply (None: none in time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await ping(machine, address, wait):
            return time.time()
    return None


async def configured(agent: Agent, others: Sequence[Agent], seconds: float = 20) -> None:
    """Wait until ``agent``'s wm0 has every one of ``others`` as a peer, at its underlay
    endpoint."""
    wanted = {other.public_key: f"{other.machine.address}:51820" for other in others}

    async def probe() -> bool:
        endpoints = await asyncio.to_thread(agent.wg_endpoints)
        return all(endpoints.get(key) == endpoint for key, endpoint in wanted.items())

    await eventually(probe, seconds, f"{agent.name} configures {[o.name for o in others]}")


async def mesh_pings(pairs: Sequence[tuple[Agent, Agent]], seconds: float) -> dict[str, float]:
    """Every ``source`` pings ``target`` until a reply (handshakes may need a retry); the
    seconds each pair took, by ``source->target``."""
    started = time.time()
    replies = await asyncio.gather(
        *(first_reply(source.machine, target.virtual_ip, seconds) for source, target in pairs)
    )
    failed = [
        f"{s.name}->{t.name}" for (s, t), when in zip(pairs, replies, strict=True) if not when
    ]
    assert not failed, f"no reply within {seconds} s: {failed}"
    return {
        f"{s.name}->{t.name}": round(when - started, 2)
        for (s, t), when in zip(pairs, replies, strict=True)
        if when is not None
    }


async def exits_revoked(agent: Agent, seconds: float) -> None:
    """The agent of a revoked device stops for good within ``seconds``, saying why, and takes
    its interface with it."""
    assert await agent.process.exit_code(seconds) == EXIT_REFUSED
    assert "device revoked (4004)" in agent.log()
    assert agent.wg_peers() is None


async def dropped(gone: Agent, peers: Sequence[Agent], seconds: float) -> float:
    """Wait until ``gone``'s key has left the WireGuard peers of every one of ``peers`` (each
    still with its interface); the seconds that took, from the call."""
    started = time.monotonic()

    async def probe() -> bool:
        tables = [await asyncio.to_thread(agent.wg_peers) for agent in peers]
        return all(table is not None and gone.public_key not in table for table in tables)

    names = [agent.name for agent in peers]
    await eventually(probe, seconds, f"{gone.name}'s key leaves the WireGuard peers of {names}")
    return time.monotonic() - started


RELAY_TOKEN = "lab-relay-token-0123456789abcdef"
RELAY_PORT = 3478
RELAY_SYNCED = '/api/v1/relay/sync "HTTP/1.1 200 OK"'
"""httpx's log line of a check-in the server accepted."""
RELAY_START_SECONDS = 60.0


class RelayHost:
    """``wiremesh relay up`` on an open machine of the lab."""

    def __init__(self, mesh: Mesh, name: str, machine: Machine) -> None:
        self.name = name
        self.machine = machine
        self.state_dir = mesh.directory / f"relay-{name}"
        self.endpoint = f"{machine.address}:{RELAY_PORT}"
        self.process: Process = mesh.processes.add(
            f"relay-{name}",
            machine.argv(
                PYTHON, "-m", "wiremesh.relay", "up", "--server", mesh.url, "--name", name,
                "--endpoint", self.endpoint, "--listen-port", str(RELAY_PORT),
                "--interface", "wmr0", "--state-dir", str(self.state_dir),
            ),
            {**clean_environ(), "WIREMESH_RELAY_TOKEN": RELAY_TOKEN},
        )  # fmt: skip
        self.lab = mesh.lab

    async def start(self) -> None:
        self.process.start()
        self.lab.record(self.process.pid)

        async def up() -> bool:
            # Checked in with the server, not only its interface up: agents learn of it
            # from the server, and the tests time paths from the agents' start.
            log = self.process.log()
            return f"relay {self.name} up" in log and RELAY_SYNCED in log

        await eventually(up, RELAY_START_SECONDS, f"relay {self.name} starts and checks in")

    @property
    def public_key(self) -> str:
        """Its public key (it keeps its private key in its state dir)."""
        return public_key_of((self.state_dir / "relay.key").read_text().strip())


class NatMesh:
    """A :class:`Mesh` whose server takes relays, and relay ``r1`` on machine 1."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.relays: list[RelayHost] = []

    async def add_relay(self, name: str, machine: Machine) -> RelayHost:
        relay = RelayHost(self.mesh, name, machine)
        await relay.start()
        self.relays.append(relay)
        return relay

    def relay_key(self) -> str:
        return self.relays[0].public_key
