"""A real server process on a fresh database, an org with an admin, and a setup key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.e2e.processes import (
    AGENT_ONLY,
    SERVER_ENV,
    WIREMESH,
    AgentProcess,
    ProcessGroup,
    ServerProcess,
    clean_environ,
    free_port,
)
from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.agent.enroll import enroll
from wiremesh.agent.state import Enrollment, load_enrollment
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.presence.models import ConnectionStatus

NETWORK = "100.64.0.0/24"


class Deployment:
    """The server process, its database, an org admin's token and a reusable setup key."""

    def __init__(
        self,
        server: ServerProcess,
        group: ProcessGroup,
        sessionmaker: async_sessionmaker[AsyncSession],
        directory: Path,
        org_id: int,
        admin_token: str,
    ) -> None:
        self.server = server
        self.group = group
        self.sessionmaker = sessionmaker
        self.directory = directory
        self.org_id = org_id
        self.admin_token = admin_token
        self.setup_key = ""

    async def create_setup_key(self) -> None:
        async with httpx.AsyncClient(base_url=self.server.url) as client:
            response = await client.post(
                f"/api/v1/orgs/{self.org_id}/setup-keys",
                json={"name": "e2e", "reusable": True},
                headers=auth(self.admin_token),
            )
        assert response.status_code == 201, response.text
        self.setup_key = response.json()["key"]

    def state_dir(self, name: str) -> Path:
        return self.directory / "agents" / name

    async def enroll_cli(
        self, name: str, *, full_cli: bool = False, servers: list[ServerProcess] | None = None
    ) -> Enrollment:
        """``agent enroll`` as a subprocess, through the ``wiremesh`` command if ``full_cli``.

        ``servers`` (default: the deployment's one) are given in order, one ``--server`` each.
        """
        state_dir = self.state_dir(name)
        command = [*WIREMESH, "agent"] if full_cli else AGENT_ONLY
        server_options = [
            option for server in servers or [self.server] for option in ("--server", server.url)
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

    async def enroll_direct(self, name: str) -> Enrollment:
        """The same enrollment in this process (saves a Python start-up)."""
        return await enroll(self.state_dir(name), [self.server.url], self.setup_key, name)

    async def start_replica(self, server_id: str) -> ServerProcess:
        """Another ``wiremesh server`` on this database and its own port (PostgreSQL only:
        replicas cannot share an SQLite file), known as ``server_id`` in the database."""
        replica = ServerProcess(
            self.group,
            {**self.server.env, "WIREMESH_SERVER_ID": server_id},
            free_port(),
            name=server_id,
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


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.cleanup()
        print(group.dump_logs())  # shown by pytest when the test failed


@pytest.fixture
async def deployment(
    database_url: str | None,
    sessionmaker: async_sessionmaker[AsyncSession],
    processes: ProcessGroup,
    tmp_path: Path,
) -> AsyncIterator[Deployment]:
    async with sessionmaker() as session:
        org = await make_org(session, network_cidr=NETWORK)
        admin = await make_user(session)
        await make_member(session, org, admin, OrgRole.OWNER)
        token = await make_token(session, admin)
        await session.commit()
        org_id = org.id
    env = {**clean_environ(), **SERVER_ENV, "WIREMESH_DATA_DIR": str(tmp_path)}
    if database_url is not None:
        env["WIREMESH_DATABASE_URL"] = database_url
    server = ServerProcess(processes, env, free_port())
    deployment = Deployment(server, processes, sessionmaker, tmp_path, org_id, token)
    try:
        await server.start()
        await deployment.create_setup_key()
        yield deployment
    finally:
        processes.cleanup()  # before the database fixture drops the database
