"""Fixtures of the mail tests: certificates and real SMTP servers, stopped after each test."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.mail.smtp_servers import (
    Certificate,
    SilentServer,
    SmtpServer,
    make_certificate,
    start_server,
)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Immutable: one self-signed certificate for every test server of the session."""
    return make_certificate(tmp_path_factory.mktemp("smtp-cert"))


@pytest.fixture
def smtp_servers(certificate: Certificate) -> Iterator[Callable[..., SmtpServer]]:
    """Start real SMTP servers: ``smtp_servers(mode="implicit", password=...)``."""
    started: list[SmtpServer] = []

    def start(**options: Any) -> SmtpServer:
        server = start_server(certificate, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def silent_server() -> AsyncIterator[SilentServer]:
    server = SilentServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def key_file(settings: Any) -> Path:
    path: Path = settings.data_dir / "secret.key"
    return path


@pytest.fixture(autouse=True)
async def _closing_sockets_close() -> AsyncIterator[None]:
    """After a failed TLS handshake asyncio finishes closing the client socket a few loop
    iterations later. Give the loop those iterations before pytest-asyncio closes it (a server
    process' loop never closes), and collect garbage so a real leak shows in its own test."""
    yield
    await asyncio.sleep(0.05)
    gc.collect()
