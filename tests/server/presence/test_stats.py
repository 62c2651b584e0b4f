"""The live figures of one replica, as the benchmarks and operators read them."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import connect

from tests.factories import auth, make_token, make_user
from tests.support.live import LiveServer, OrgFixture, create_setup_key, enroll
from wiremesh.server.presence.loopmonitor import LoopLagMonitor


async def test_stats_count_live_sessions_for_a_server_admin(
    live_server: LiveServer, org: OrgFixture, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        admin = await make_user(session, server_admin=True)
        admin_token = await make_token(session, admin)
        await session.commit()
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        key = await create_setup_key(client, org)
        device = await enroll(client, key, "stats")
        async with connect(live_server.ws_url) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "auth",
                        "version": 1,
                        "credential": device["credential"],
                        "agent_version": "test",
                    }
                )
            )
            await ws.recv()
            await asyncio.sleep(0.3)
            response = await client.get("/api/v1/server/stats", headers=auth(admin_token))
            assert response.status_code == 200, response.text
            stats = response.json()
            assert stats["sessions"] == 1
            assert stats["orgs_online"] == 1
            assert stats["loop_lag_p99_ms"] >= 0
            assert stats["rss_bytes"] > 0
        refused = await client.get("/api/v1/server/stats", headers=auth(org.admin_token))
        assert refused.status_code == 403


def test_lag_percentiles_come_from_the_samples() -> None:
    monitor = LoopLagMonitor()
    assert monitor.percentile(0.99) == 0.0
    monitor.samples.extend([0.001 * i for i in range(100)])
    assert monitor.percentile(0.5) == 0.05
    assert monitor.percentile(0.99) == 0.099
