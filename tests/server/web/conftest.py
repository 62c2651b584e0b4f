"""A browser-like client: cookies kept, redirects not followed (tests look at them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from wiremesh.server.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No failure budget refills within a test, however slow the machine: counts are exact."""
    return settings.model_copy(update={"auth_failure_per_minute": 0.001})


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://wiremesh.test") as client:
        yield client
