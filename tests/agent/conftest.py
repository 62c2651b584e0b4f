"""Agent test fixtures: enrollments, a scripted fake server and a state directory.

The real app on a real socket is the shared ``live_server`` fixture (:mod:`tests.support.live`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from wiremesh.agent.backoff import Backoff
from wiremesh.agent.keys import KeyPair, generate_keypair
from wiremesh.agent.memory import MemoryBackend
from wiremesh.agent.runner import AgentRunner
from wiremesh.agent.state import (
    EnrolledDevice,
    EnrolledNetwork,
    Enrollment,
    save_enrollment,
)


def make_enrollment(public_key: str, **overrides: object) -> Enrollment:
    fields: dict[str, object] = {
        "server_urls": ["https://wiremesh.example.com"],
        "credential": "wmd_abc_secretsecret",
        "device": EnrolledDevice(
            id=3,
            org_id=1,
            user_id=2,
            peer_id="peer-0123456789",
            hostname="laptop",
            virtual_ip="100.64.0.7",
            public_key=public_key,
        ),
        "network": EnrolledNetwork(org_id=1, org_name="acme", network="100.64.0.0/24"),
        "enrolled_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    fields.update(overrides)
    return Enrollment.model_validate(fields)


def fake_enrollment(*server_urls: str, keys: KeyPair | None = None) -> tuple[Enrollment, KeyPair]:
    """An enrollment for fake servers: nothing checks it but the fakes."""
    keys = keys or generate_keypair()
    enrollment = Enrollment(
        server_urls=server_urls,
        credential="wmd_fake_credential",
        device=EnrolledDevice(
            id=1,
            org_id=1,
            user_id=1,
            peer_id="self",
            hostname="me",
            virtual_ip="10.0.0.1",
            public_key=keys.public_key,
        ),
        network=EnrolledNetwork(org_id=1, org_name="acme", network="10.0.0.0/24"),
        enrolled_at=datetime.now(UTC),
    )
    return enrollment, keys


Handler = Callable[[ServerConnection, int], Awaitable[None]]


@dataclass
class FakeServer:
    """A WebSocket server whose n-th connection (from 0) is handled by ``script(ws, n)``."""

    script: Handler
    url: str = ""
    connections: int = 0
    close_codes: list[int | None] = field(default_factory=list)
    """The close code each connection ended with, as the agent sent it."""

    async def handle(self, websocket: ServerConnection) -> None:
        number = self.connections
        self.connections += 1
        try:
            await self.script(websocket, number)
        finally:
            await websocket.wait_closed()
            received = websocket.protocol.close_rcvd
            self.close_codes.append(received.code if received is not None else None)


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[Handler], Awaitable[FakeServer]]]:
    servers = []

    async def start(script: Handler) -> FakeServer:
        fake = FakeServer(script)
        server = await serve(fake.handle, "127.0.0.1", 0, compression=None)
        servers.append(server)
        port = next(iter(server.sockets)).getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}"
        return fake

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent-state"


def saved_runner(url: str, state_dir: Path) -> AgentRunner:
    """A runner whose enrollment is saved in ``state_dir``, so it re-reads the list there."""
    enrollment, keys = fake_enrollment(url)
    save_enrollment(state_dir, enrollment, keys.private_key)
    return AgentRunner(
        enrollment,
        keys.private_key,
        MemoryBackend(),
        listen_port=51999,
        backoff=Backoff(base=0.01, cap=0.05),
        state_dir=state_dir,
    )
