"""Fixtures of the dashboard tests: a browser-like client (cookies kept, redirects not
followed) and a real SMTP server the app's mail worker delivers to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.server.mail.smtp_servers import Certificate, SmtpServer, make_certificate, start_server
from wiremesh.server.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No failure budget refills within a test, however slow the machine: counts are exact;
    the outbox is polled often, so mailed links arrive soon."""
    return settings.model_copy(update={"auth_failure_per_minute": 0.001, "mail_poll_interval": 0.2})


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://wiremesh.test") as client:
        yield client


@pytest.fixture(scope="session")
def smtp_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(Path(tmp_path_factory.mktemp("web-smtp-cert")))


@pytest.fixture
def smtp_server(smtp_certificate: Certificate) -> Iterator[SmtpServer]:
    """A real SMTP server (STARTTLS and AUTH required) in its own thread."""
    server = start_server(smtp_certificate, mode="starttls")
    yield server
    server.stop()
