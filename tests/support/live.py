"""The real app served by uvicorn on a real socket, inside the test's event loop, and an
organization with an owner to enroll devices in.

Fixtures (registered in ``tests/conftest.py``): ``live_server`` serves the ``app`` fixture;
``org`` is an organization with an owner and an API token, in the ``sessionmaker``'s database.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.orgs.models import OrgRole


@asynccontextmanager
async def serve_app(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` (its lifespan already running) on a free port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_ping_interval=None,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class LiveServer:
    base_url: str
    ws_url: str
    app: FastAPI


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[LiveServer]:
    """The app (lifespan already running) served by uvicorn on a free port in this loop."""
    async with serve_app(app) as base_url:
        yield LiveServer(
            base_url=base_url,
            ws_url=base_url.replace("http://", "ws://") + "/api/v1/agent/ws",
            app=app,
        )


@dataclass
class OrgFixture:
    org_id: int
    admin_token: str
    network: str


@pytest.fixture
async def org(sessionmaker: async_sessionmaker[AsyncSession]) -> OrgFixture:
    async with sessionmaker() as session:
        organization = await make_org(session, network_cidr="100.64.0.0/24")
        admin = await make_user(session)
        await make_member(session, organization, admin, OrgRole.OWNER)
        token = await make_token(session, admin)
        await session.commit()
        return OrgFixture(org_id=organization.id, admin_token=token, network="100.64.0.0/24")


async def create_setup_key(
    client: httpx.AsyncClient, org: OrgFixture, *, reusable: bool = True
) -> str:
    response = await client.post(
        f"/api/v1/orgs/{org.org_id}/setup-keys",
        json={"name": "test", "reusable": reusable},
        headers=auth(org.admin_token),
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


async def live_setup_key(server: LiveServer, org: OrgFixture) -> str:
    """A reusable setup key of ``org``, made through ``server``'s API."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        return await create_setup_key(client, org)


async def enroll(client: httpx.AsyncClient, setup_key: str, hostname: str) -> dict[str, object]:
    response = await client.post(
        "/api/v1/enroll", json={"setup_key": setup_key, "hostname": hostname}
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body
