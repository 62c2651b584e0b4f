"""Presence transitions reach the org's alert mails, inside the transition's transaction."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import connect

from tests.factories import auth
from tests.support.live import LiveServer, OrgFixture, create_setup_key, enroll
from wiremesh.server.mail.models import MailOutbox


async def _outbox(sessionmaker: async_sessionmaker[AsyncSession]) -> list[MailOutbox]:
    async with sessionmaker() as session:
        return list((await session.execute(select(MailOutbox).order_by(MailOutbox.id))).scalars())


async def test_a_device_going_offline_and_back_queues_an_alert_then_a_recovery(
    live_server: LiveServer, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        enabled = await client.put(
            f"/api/v1/orgs/{org.org_id}/alerts",
            json={"enabled": True, "offline_threshold_seconds": 0, "debounce_seconds": 3600},
            headers=auth(org.admin_token),
        )
        assert enabled.status_code == 200, enabled.text
        key = await create_setup_key(client, org)
        device = await enroll(client, key, "watched")
    auth_frame = json.dumps(
        {"type": "auth", "version": 1, "credential": device["credential"], "agent_version": "t"}
    )
    async with connect(live_server.ws_url) as ws:
        await ws.send(auth_frame)
        await ws.recv()
    for _ in range(100):
        if await _outbox(sessionmaker):
            break
        await asyncio.sleep(0.05)
    mails = await _outbox(sessionmaker)
    assert [m.kind for m in mails] == ["device_offline"]
    assert "watched" in mails[0].subject

    async with connect(live_server.ws_url) as ws:
        await ws.send(auth_frame)
        await ws.recv()
        for _ in range(100):
            if len(await _outbox(sessionmaker)) > 1:
                break
            await asyncio.sleep(0.05)
    kinds = [m.kind for m in await _outbox(sessionmaker)]
    assert kinds[:2] == ["device_offline", "device_online"]
