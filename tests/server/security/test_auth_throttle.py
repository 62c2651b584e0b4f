"""Failed authentications are limited per client address: 429 with ``Retry-After`` on HTTP,
close 4007 on the agent WebSocket, logged at WARNING without the credential."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.factories import auth, make_member, make_org, make_token, make_user
from tests.support.live import serve_app
from wiremesh.protocol import PROTOCOL_VERSION, CloseCode
from wiremesh.server.config import Settings
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.ratelimit import TokenBuckets

BURST = 3
BAD_TOKEN = "wm_0000000000000000_" + "A" * 43


@pytest.fixture
def settings(database_url: str | None, tmp_path: Path) -> Settings:
    """The suite's settings with a small budget: three failures, then one a second."""
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        secret_keys=[],
        auth_failure_burst=BURST,
        auth_failure_per_minute=60,
    )


def _client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://wiremesh.test")


def _throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_failures"
    assert 1 <= int(response.headers["retry-after"]) <= 2


async def test_bad_tokens_then_429_for_that_address_only(
    app: FastAPI, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    user = await make_user(session)
    good = await make_token(session, user)
    await session.commit()
    async with _client_at(app, "203.0.113.7") as attacker, _client_at(app, "203.0.113.8") as other:
        with caplog.at_level(logging.WARNING, logger="wiremesh.auth"):
            for _ in range(BURST):
                response = await attacker.get("/api/v1/users/me", headers=auth(BAD_TOKEN))
                assert response.status_code == 401
        _throttled(await attacker.get("/api/v1/users/me", headers=auth(BAD_TOKEN)))
        # Only failures are refused: a good token from the same address (a NAT, a proxy)
        # still passes, and other addresses are not concerned.
        assert (await attacker.get("/api/v1/users/me", headers=auth(good))).status_code == 200
        _throttled(await attacker.get("/api/v1/users/me", headers=auth(BAD_TOKEN)))
        assert (await other.get("/api/v1/users/me", headers=auth(good))).status_code == 200
        assert (await attacker.get("/healthz")).status_code == 200

    failures = [r for r in caplog.records if r.name == "wiremesh.auth"]
    assert len(failures) == BURST + 2  # every failure is logged, the throttled ones too
    assert all(r.levelno == logging.WARNING for r in failures)
    assert all("203.0.113.7" in r.getMessage() for r in failures)
    assert not any(BAD_TOKEN in r.getMessage() or "AAAA" in r.getMessage() for r in failures)


async def test_bad_setup_keys_and_invitations_count_too(
    app: FastAPI, session: AsyncSession
) -> None:
    owner = await make_user(session)
    org = await make_org(session)
    await make_member(session, org, owner, OrgRole.OWNER)
    token = await make_token(session, owner)
    await session.commit()
    async with _client_at(app, "203.0.113.9") as client:
        for _ in range(BURST - 1):
            enrolled = await client.post(
                "/api/v1/enroll", json={"setup_key": "wmk_nope_nope", "hostname": "h"}
            )
            assert enrolled.json()["error"]["code"] == "invalid_setup_key"
        accepted = await client.post(
            "/api/v1/invitations/accept", json={"token": "nope"}, headers=auth(token)
        )
        assert accepted.json()["error"]["code"] == "invalid_invitation"
        _throttled(
            await client.post(
                "/api/v1/enroll", json={"setup_key": "wmk_nope_nope", "hostname": "h"}
            )
        )


async def test_a_request_without_a_credential_is_not_a_failure(app: FastAPI) -> None:
    async with _client_at(app, "203.0.113.10") as client:
        for _ in range(BURST * 2):
            assert (await client.get("/api/v1/users/me")).status_code == 401


@pytest.fixture
async def ws_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve_app(app) as base_url:
        yield base_url.replace("http://", "ws://") + "/api/v1/agent/ws"


async def test_bad_agent_credentials_then_close_4007(ws_url: str) -> None:
    auth_frame = json.dumps(
        {
            "type": "auth",
            "version": PROTOCOL_VERSION,
            "credential": "wmd_0000000000000000_" + "A" * 43,
            "agent_version": "test",
        }
    )
    codes = []
    for _ in range(BURST + 1):
        async with connect(ws_url) as ws:
            with contextlib.suppress(ConnectionClosed):  # the 4007 comes before it is read
                await ws.send(auth_frame)
            await ws.wait_closed()
            codes.append(ws.close_code)
            reason = ws.close_reason
    assert codes == [CloseCode.AUTH_FAILED] * BURST + [CloseCode.RATE_LIMITED]
    assert "failed authentications" in str(reason)


async def test_a_good_agent_behind_a_failing_address_still_connects(
    ws_url: str, session: AsyncSession, app: FastAPI
) -> None:
    """Agents of deleted devices restarting behind one NAT must not lock out their
    neighbours: the throttle answers failures only."""
    org = await make_org(session)
    owner = await make_user(session)
    await make_member(session, org, owner, OrgRole.OWNER)
    token = await make_token(session, owner)
    await session.commit()
    async with _client_at(app, "203.0.113.11") as client:
        key = await client.post(
            f"/api/v1/orgs/{org.id}/setup-keys", json={"name": "k"}, headers=auth(token)
        )
        assert key.status_code == 201, key.text
        enrolled = await client.post(
            "/api/v1/enroll", json={"setup_key": key.json()["key"], "hostname": "good"}
        )
        assert enrolled.status_code == 201, enrolled.text
    device = enrolled.json()
    bad = json.dumps(
        {
            "type": "auth",
            "version": PROTOCOL_VERSION,
            "credential": "wmd_0000000000000000_" + "A" * 43,
            "agent_version": "test",
        }
    )
    for _ in range(BURST + 1):
        async with connect(ws_url) as ws:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(bad)
            await ws.wait_closed()
    good = json.dumps(
        {
            "type": "auth",
            "version": PROTOCOL_VERSION,
            "credential": device["credential"],
            "agent_version": "test",
        }
    )
    async with connect(ws_url) as ws:
        await ws.send(good)
        welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"


def test_a_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(2, 0.5, clock=lambda: now[0])
    assert buckets.retry_after("a") is None
    buckets.take("a")
    assert buckets.retry_after("a") is None
    buckets.take("a")
    assert buckets.retry_after("a") == pytest.approx(2.0)
    buckets.take("a")  # an empty bucket stays empty, it does not go into debt
    assert buckets.retry_after("a") == pytest.approx(2.0)
    now[0] = 1.0
    assert buckets.retry_after("a") == pytest.approx(1.0)
    now[0] = 2.0
    assert buckets.retry_after("a") is None
    now[0] = 100.0
    buckets.take("a")
    assert buckets.retry_after("a") is None  # refilled to the burst, not beyond
    assert buckets.retry_after("b") is None


def test_buckets_are_bounded_in_number() -> None:
    buckets = TokenBuckets(1, 1.0, clock=lambda: 0.0, max_keys=3)
    for key in "abcde":
        buckets.take(key)
    assert len(buckets) == 3
    assert buckets.retry_after("a") is None  # the least recently charged were forgotten
    assert buckets.retry_after("e") is not None


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        TokenBuckets(0, 1.0)
    with pytest.raises(ValueError, match="auth_failure_burst"):
        Settings(auth_failure_burst=0)
