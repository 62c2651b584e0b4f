"""Real server processes on a fresh database, an org with an admin, and a setup key.

``deployment`` is one server (SQLite or PostgreSQL). ``start_deployment`` builds the same
with several replicas on one PostgreSQL database, optionally behind HAProxy: the
high-availability set-up of docs/high-availability.md.

The fixtures are registered in ``tests/conftest.py``: the end-to-end tests use them, and the
network-namespace tests run replicas with ``start_deployment`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from tests.server.devices.agents import LiveAgent
from tests.support.ports import free_port
from tests.support.processes import (
    AGENT_ONLY,
    CLUSTER_ENV,
    CONNECT_SECONDS,
    SERVER_ENV,
    WIREMESH,
    AgentProcess,
    HAProxy,
    ProcessGroup,
    ServerProcess,
    clean_environ,
)
from tests.support.waiting import eventually
from wiremesh.agent.enroll import enroll
from wiremesh.agent.state import Enrollment, load_enrollment
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus

NETWORK = "100.64.0.0/24"

Endpoint = ServerProcess | HAProxy
"""Anything with a ``url`` and a ``ws_url``: a replica, or HAProxy in front of them."""


class ConnectedRowWatch:
    """Reads ``connection_status`` every ``interval`` in the background and keeps every moment
    a device had more than one ``connected`` row: what no restart, pause or failover may do."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], interval: float = 0.05
    ) -> None:
        self.sessionmaker = sessionmaker
        self.interval = interval
        self.polls = 0
        self.doubled: dict[tuple[str, ...], int] = {}
        """Each set of rows seen connected together for one device: the poll it was first seen."""

    async def poll_once(self) -> None:
        statement = select(
            ConnectionStatus.id, ConnectionStatus.peer_id, ConnectionStatus.server_id
        ).where(ConnectionStatus.status == ConnectionState.CONNECTED.value)
        async with self.sessionmaker() as session:
            rows = (await session.execute(statement)).all()
        by_device: dict[str, list[str]] = {}
        for row_id, peer_id, server_id in rows:
            by_device.setdefault(peer_id, []).append(f"row {row_id} on {server_id}")
        self.polls += 1
        for peer_id, owned in by_device.items():
            if len(owned) > 1:
                self.doubled.setdefault((peer_id, *owned), self.polls)

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)

    def check(self) -> None:
        assert self.polls > 0, "connection_status was never read"
        assert not self.doubled, "a device had two connected rows:\n" + "\n".join(
            f"from poll {poll} of {self.polls}: {rows[0]} connected as {', '.join(rows[1:])}"
            for rows, poll in self.doubled.items()
        )


class Deployment:
    """Server replicas on one database (SQLite: one), optionally HAProxy in front, an org
    whose owner is also a server administrator, and a reusable setup key."""

    def __init__(
        self,
        replicas: list[ServerProcess],
        group: ProcessGroup,
        sessionmaker: async_sessionmaker[AsyncSession],
        directory: Path,
        org_id: int,
        admin_token: str,
        *,
        database_url: str | None = None,
        proxy: HAProxy | None = None,
    ) -> None:
        self.replicas = replicas
        self.database_url = database_url
        self.group = group
        self.sessionmaker = sessionmaker
        self.directory = directory
        self.org_id = org_id
        self.admin_token = admin_token
        self.proxy = proxy
        self.setup_key = ""
        self.live_agents: list[LiveAgent] = []

    @property
    def server(self) -> ServerProcess:
        """The first (with one server, the only) replica."""
        return self.replicas[0]

    @property
    def entry(self) -> Endpoint:
        """Where agents enroll and connect: HAProxy when there is one, else the first replica."""
        return self.proxy or self.server

    async def api(
        self,
        method: str,
        path: str,
        *,
        via: Endpoint | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request under ``/api/v1`` through ``via`` (default: the entry), as the org's
        owner (also a server administrator) unless another ``token`` is given."""
        endpoint = via or self.entry
        verify = endpoint.verify if isinstance(endpoint, ServerProcess) else True
        async with httpx.AsyncClient(base_url=endpoint.url, timeout=10, verify=verify) as client:
            return await client.request(
                method, f"/api/v1{path}", headers=auth(token or self.admin_token), **kwargs
            )

    async def create_setup_key(self) -> None:
        response = await self.api(
            "POST", f"/orgs/{self.org_id}/setup-keys", json={"name": "e2e", "reusable": True}
        )
        assert response.status_code == 201, response.text
        self.setup_key = response.json()["key"]

    def state_dir(self, name: str) -> Path:
        return self.directory / "agents" / name

    async def enroll_cli(
        self, name: str, *, full_cli: bool = False, servers: list[Endpoint] | None = None
    ) -> Enrollment:
        """``agent enroll`` as a subprocess, through the ``wiremesh`` command if ``full_cli``.

        ``servers`` (default: the entry) are given in order, one ``--server`` each.
        """
        state_dir = self.state_dir(name)
        command = [*WIREMESH, "agent"] if full_cli else AGENT_ONLY
        server_options = [
            option for server in servers or [self.entry] for option in ("--server", server.url)
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            "enroll",
            *server_options,
            "--state-dir",
            str(state_dir),
            "--hostname",
            name,
            env={**clean_environ(), "WIREMESH_SETUP_KEY": self.setup_key},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()
        return load_enrollment(state_dir)

    async def enroll_direct(self, name: str, *, via: Endpoint | None = None) -> Enrollment:
        """The same enrollment in this process (saves a Python start-up), with ``via``'s URL
        (default: the entry's) as the agent's only server."""
        url = (via or self.entry).url
        return await enroll(self.state_dir(name), [url], self.setup_key, name)

    async def enroll_raw(self, name: str, *, via: Endpoint | None = None) -> dict[str, Any]:
        """``POST /api/v1/enroll`` through ``via``: the device and its credential, no key pair."""
        async with httpx.AsyncClient(base_url=(via or self.entry).url, timeout=10) as client:
            response = await client.post(
                "/api/v1/enroll", json={"setup_key": self.setup_key, "hostname": name}
            )
        assert response.status_code == 201, response.text
        enrolled: dict[str, Any] = response.json()
        return enrolled

    async def connect_live(
        self,
        enrolled: Mapping[str, Any],
        *,
        via: Endpoint | None = None,
        port: int = 51820,
        source_address: str | None = None,
    ) -> LiveAgent:
        """A raw agent session for a device from ``enroll_raw``, closed at teardown."""
        agent = await LiveAgent.connect(
            (via or self.entry).ws_url,
            enrolled["credential"],
            port,
            source_address=source_address,
        )
        self.live_agents.append(agent)
        return agent

    async def start_replica(self, server_id: str) -> ServerProcess:
        """Another ``wiremesh server`` on this database and its own port (PostgreSQL only:
        replicas cannot share an SQLite file), known as ``server_id`` in the database."""
        replica = ServerProcess(
            self.group,
            {**self.server.env, "WIREMESH_SERVER_ID": server_id},
            free_port(self.server.host),
            name=server_id,
            host=self.server.host,
        )
        await replica.start()
        return replica

    def agent(self, name: str, *, full_cli: bool = False) -> AgentProcess:
        return AgentProcess(
            self.group, name, self.state_dir(name), clean_environ(), full_cli=full_cli
        )

    async def rows(self, peer_id: str | None = None) -> list[ConnectionStatus]:
        statement = select(ConnectionStatus).order_by(ConnectionStatus.id)
        if peer_id is not None:
            statement = statement.where(ConnectionStatus.peer_id == peer_id)
        async with self.sessionmaker() as session:
            return list((await session.execute(statement)).scalars())

    async def heartbeating(
        self, count: int, exclude: set[int] | None = None
    ) -> list[ConnectionStatus]:
        """Wait until ``count`` connected rows (ids not in ``exclude``) have a flushed pong.

        A row is written with ``last_pong_at = connected_at`` (authenticating counts as an
        answer), before the agent has even read its welcome; only a later one is a pong."""

        async def probe() -> list[ConnectionStatus] | None:
            rows = [
                row
                for row in await self.rows()
                if row.status == ConnectionState.CONNECTED and row.id not in (exclude or set())
            ]
            ready = [
                row
                for row in rows
                if row.last_pong_at is not None and row.last_pong_at > row.connected_at
            ]
            return ready if len(ready) == count else None

        return await eventually(
            probe, CONNECT_SECONDS, f"{count} agents connected and heartbeating"
        )

    async def ended(self, row_id: int, seconds: float) -> ConnectionStatus:
        """Wait until connection row ``row_id`` has ended; the ended row."""

        async def probe() -> ConnectionStatus | None:
            row = next(r for r in await self.rows() if r.id == row_id)
            return row if row.status != ConnectionState.CONNECTED else None

        return await eventually(probe, seconds, f"connection row {row_id} ends")

    async def cli(self, *args: str) -> str:
        """``wiremesh ARGS`` against this deployment's database, as an operator runs it."""
        env = {**clean_environ(), "WIREMESH_DATA_DIR": str(self.directory)}
        if self.database_url is not None:
            env["WIREMESH_DATABASE_URL"] = self.database_url
        process = await asyncio.create_subprocess_exec(
            *WIREMESH,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, f"wiremesh {' '.join(args)}:\n{output.decode()}"
        return output.decode()

    async def server_id(self, replica: ServerProcess) -> str:
        """The replica's id in ``connection_status.server_id``, from ``/api/v1/server/stats``."""
        response = await self.api("GET", "/server/stats", via=replica)
        assert response.status_code == 200, response.text
        server_id: str = response.json()["server_id"]
        return server_id

    async def replica_with_id(self, server_id: str) -> ServerProcess:
        for replica in self.replicas:
            if replica.running() and await self.server_id(replica) == server_id:
                return replica
        raise AssertionError(f"no running replica has the id {server_id}")

    async def online_flags(self, replica: ServerProcess) -> dict[str, bool]:
        """``online`` of every device, by hostname, as ``GET .../devices`` on ``replica`` says."""
        response = await self.api("GET", f"/orgs/{self.org_id}/devices", via=replica)
        assert response.status_code == 200, response.text
        return {device["hostname"]: device["online"] for device in response.json()}

    @asynccontextmanager
    async def watch_connected_rows(
        self, interval: float = 0.05
    ) -> AsyncIterator[ConnectedRowWatch]:
        """Poll ``connection_status`` while the block runs; fails if a device was ever
        ``connected`` twice."""
        watch = ConnectedRowWatch(self.sessionmaker, interval)
        task = asyncio.create_task(watch.run())
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await watch.poll_once()
        watch.check()


class StartDeployment(Protocol):
    async def __call__(
        self,
        replicas: int = 1,
        *,
        proxy: bool = False,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        ca_file: Path | None = None,
    ) -> Deployment: ...


def find_haproxy() -> str:
    """The haproxy binary. Missing: a failure in CI (``.ci/run`` installs it), else a skip."""
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if binary is not None:
        return binary
    if os.environ.get("CI"):
        pytest.fail("haproxy is not installed, although .ci/run installs it")
    pytest.skip("haproxy is not installed (apt-get install haproxy): the HAProxy tests need it")


async def _org_with_owner(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, str]:
    """An org and its owner's token; the owner is a server admin too (replica stats)."""
    async with sessionmaker() as session:
        org = await make_org(session, network_cidr=NETWORK)
        admin = await make_user(session, server_admin=True)
        await make_member(session, org, admin, OrgRole.OWNER)
        token = await make_token(session, admin)
        await session.commit()
        return org.id, token


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.cleanup()
        print(group.dump_logs())  # shown by pytest when the test failed


@pytest.fixture
async def start_deployment(
    database_url: str | None,
    sessionmaker: async_sessionmaker[AsyncSession],
    processes: ProcessGroup,
    tmp_path: Path,
) -> AsyncIterator[StartDeployment]:
    """Starts the deployment once per test: ``replicas`` servers (more than one only on
    PostgreSQL) listening on ``host``, HAProxy in front if ``proxy``, ``env`` over the short
    test settings. With ``WIREMESH_TLS_CERT`` in ``env`` they serve TLS, verified by the
    test with ``ca_file``."""
    started: list[Deployment] = []

    async def start(
        replicas: int = 1,
        *,
        proxy: bool = False,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        ca_file: Path | None = None,
    ) -> Deployment:
        assert not started, "one deployment per test"
        if replicas > 1 and database_url is None:
            raise ValueError("replicas share a PostgreSQL database; SQLite has one server")
        binary = find_haproxy() if proxy else None
        org_id, token = await _org_with_owner(sessionmaker)
        # One data dir for all: replicas must share the key that encrypts stored secrets.
        server_env = {**clean_environ(), **SERVER_ENV, "WIREMESH_DATA_DIR": str(tmp_path)}
        if database_url is not None:
            server_env |= {**CLUSTER_ENV, "WIREMESH_DATABASE_URL": database_url}
        server_env |= env or {}
        servers = [
            ServerProcess(
                processes,
                server_env,
                free_port(host),
                name="server" if replicas == 1 else f"replica{i}",
                host=host,
                ca_file=ca_file,
            )
            for i in range(replicas)
        ]
        haproxy = None if binary is None else HAProxy(processes, binary, tmp_path, servers)
        deployment = Deployment(
            servers,
            processes,
            sessionmaker,
            tmp_path,
            org_id,
            token,
            database_url=database_url,
            proxy=haproxy,
        )
        started.append(deployment)
        await asyncio.gather(*(server.start() for server in servers))
        if haproxy is not None:
            await haproxy.start()
        await deployment.create_setup_key()
        return deployment

    try:
        yield start
    finally:
        processes.cleanup()  # before the database fixture drops the database
        for deployment in started:
            for agent in deployment.live_agents:
                await agent.close()


@pytest.fixture
async def deployment(start_deployment: StartDeployment) -> Deployment:
    return await start_deployment()
