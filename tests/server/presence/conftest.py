"""A real server on a real socket (uvicorn in the test's loop) and enrolled devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.factories import auth, make_member, make_org, make_token, make_user
from tests.live import serve_app
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.presence.models import ConnectionStatus


@dataclass
class LiveServer:
    base_url: str
    ws_url: str
    app: FastAPI


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[LiveServer]:
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


async def enroll(client: httpx.AsyncClient, setup_key: str, hostname: str) -> dict[str, object]:
    response = await client.post(
        "/api/v1/enroll", json={"setup_key": setup_key, "hostname": hostname}
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def connection_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[ConnectionStatus]:
    """Every connection_status row, oldest first."""
    async with sessionmaker() as session:
        result = await session.execute(select(ConnectionStatus).order_by(ConnectionStatus.id))
        return list(result.scalars())


async def silent_close_code(ws: ClientConnection) -> int | None:
    """Read without answering anything until the server closes; the code it closed with."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
