"""Retention: ended history older than the cutoff goes, in batches; a live row never does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_org, make_token, make_user
from tests.support.waiting import eventually
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail.models import MailOutbox
from wiremesh.server.presence import repository
from wiremesh.server.presence.cleanup import CleanupWorker, delete_old_connections
from wiremesh.server.presence.models import ConnectionStatus

DAY = timedelta(days=1)


@dataclass
class Owner:
    user_id: int
    org_id: int
    admin_token: str
    user_token: str


@pytest.fixture
async def owner(sessionmaker: async_sessionmaker[AsyncSession]) -> Owner:
    async with sessionmaker() as session:
        org = await make_org(session)
        user = await make_user(session)
        admin = await make_user(session, server_admin=True)
        result = Owner(
            user_id=user.id,
            org_id=org.id,
            admin_token=await make_token(session, admin),
            user_token=await make_token(session, user),
        )
        await session.commit()
        return result


def _row(owner: Owner, *, connected_at: datetime, ended_at: datetime | None) -> ConnectionStatus:
    return ConnectionStatus(
        user_id=owner.user_id,
        org_id=owner.org_id,
        virtual_ip="100.64.0.1",
        peer_id=f"peer-{uuid.uuid4().hex[:8]}",  # one live row per device: each its own
        connection_id=uuid.uuid4(),
        status="connected" if ended_at is None else "disconnected",
        connected_at=connected_at,
        disconnected_at=ended_at,
        last_seen_at=ended_at or connected_at,
        end_reason=None if ended_at is None else "client_closed",
    )


async def _seed(
    sessionmaker: async_sessionmaker[AsyncSession], owner: Owner, *, old: int
) -> dict[str, list[int]]:
    """``old`` ended rows 40 days old, 2 ancient live rows, 2 ended rows of yesterday."""
    now = utcnow()
    groups = {
        "old": [
            _row(owner, connected_at=now - 41 * DAY, ended_at=now - 40 * DAY) for _ in range(old)
        ],
        "live": [_row(owner, connected_at=now - 400 * DAY, ended_at=None) for _ in range(2)],
        "recent": [
            _row(owner, connected_at=now - 2 * DAY, ended_at=now - 1 * DAY) for _ in range(2)
        ],
    }
    async with sessionmaker() as session:
        for rows in groups.values():
            session.add_all(rows)
        await session.commit()
    return {name: [row.id for row in rows] for name, rows in groups.items()}


async def _remaining(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessionmaker() as session:
        rows = await session.execute(select(ConnectionStatus.id).order_by(ConnectionStatus.id))
        return list(rows.scalars())


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each batch deleted, in order."""
    sizes: list[int] = []
    original = repository.delete_ended_before

    async def counting(session: AsyncSession, cutoff: datetime, batch_size: int) -> int:
        deleted = await original(session, cutoff, batch_size)
        sizes.append(deleted)
        return deleted

    # cleanup.py calls it as ``repository.delete_ended_before``: patch the module attribute.
    monkeypatch.setattr(repository, "delete_ended_before", counting)
    return sizes


async def test_old_ended_rows_go_in_batches(
    sessionmaker: async_sessionmaker[AsyncSession], owner: Owner, batches: list[int]
) -> None:
    ids = await _seed(sessionmaker, owner, old=10)
    before = utcnow()
    deleted, cutoff = await delete_old_connections(sessionmaker, 30 * DAY, batch_size=3)
    assert deleted == 10
    assert batches == [3, 3, 3, 1]
    assert before - 30 * DAY <= cutoff <= utcnow() - 30 * DAY
    assert await _remaining(sessionmaker) == sorted(ids["live"] + ids["recent"])
    # A backlog of an exact multiple of the batch size ends with one empty batch.
    batches.clear()
    more = await _seed(sessionmaker, owner, old=6)
    assert (await delete_old_connections(sessionmaker, 30 * DAY, batch_size=3))[0] == 6
    assert batches == [3, 3, 0]
    assert await _remaining(sessionmaker) == sorted(
        ids["live"] + ids["recent"] + more["live"] + more["recent"]
    )


async def test_a_live_row_is_never_deleted_however_old(
    sessionmaker: async_sessionmaker[AsyncSession], owner: Owner, batches: list[int]
) -> None:
    ids = await _seed(sessionmaker, owner, old=0)
    assert (await delete_old_connections(sessionmaker, 30 * DAY, batch_size=5000))[0] == 0
    assert batches == [0]
    deleted, _cutoff = await delete_old_connections(
        sessionmaker, timedelta(seconds=1), batch_size=1
    )
    assert deleted == 2  # yesterday's ended rows; the 400-day-old live ones stay
    assert await _remaining(sessionmaker) == ids["live"]


async def test_the_worker_uses_the_retention_setting(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], owner: Owner
) -> None:
    ids = await _seed(sessionmaker, owner, old=4)
    worker = CleanupWorker(
        settings.model_copy(update={"connection_retention_days": 45, "cleanup_batch_size": 2}),
        sessionmaker,
    )
    assert await worker.run_once() == 0
    worker = CleanupWorker(
        settings.model_copy(update={"connection_retention_days": 30, "cleanup_batch_size": 2}),
        sessionmaker,
    )
    assert await worker.run_once() == 4
    assert await _remaining(sessionmaker) == sorted(ids["live"] + ids["recent"])


async def test_cleanup_endpoint_for_the_server_administrator(
    batches: list[int],
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    owner: Owner,
) -> None:
    # The app's own cleanup runs once as it starts: let it finish on an empty table, or it
    # could delete the old rows seeded here before the endpoint is asked to.
    await eventually(lambda: batches, what="the start-up cleanup run")
    batches.clear()
    ids = await _seed(sessionmaker, owner, old=5)
    refused = await client.post("/api/v1/connections/cleanup", headers=auth(owner.user_token))
    assert refused.status_code == 403
    assert len(await _remaining(sessionmaker)) == 9
    keep_all = await client.post(
        "/api/v1/connections/cleanup",
        params={"older_than_days": 60},
        headers=auth(owner.admin_token),
    )
    assert keep_all.status_code == 200
    assert keep_all.json()["deleted"] == 0
    response = await client.post("/api/v1/connections/cleanup", headers=auth(owner.admin_token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["deleted"] == 5
    cutoff = datetime.fromisoformat(body["cutoff"])
    assert abs((utcnow() - 30 * DAY - cutoff).total_seconds()) < 60
    assert await _remaining(sessionmaker) == sorted(ids["live"] + ids["recent"])
    for bad in ("0", "-1", "1e9", "x"):
        invalid = await client.post(
            "/api/v1/connections/cleanup",
            params={"older_than_days": bad},
            headers=auth(owner.admin_token),
        )
        assert invalid.status_code == 422, bad


async def test_the_worker_deletes_finished_mails_past_their_retention(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], owner: Owner
) -> None:
    """Sent and failed mails (an invitation's link in the body) go after the mail retention;
    queued and sending ones stay, however old."""
    now = utcnow()
    ages = {"sent": 40, "failed": 40, "queued": 400, "sending": 400}
    async with sessionmaker() as session:
        for status, days in ages.items():
            for recent in (False, True):
                at = now - (DAY if recent else days * DAY)
                session.add(
                    MailOutbox(
                        org_id=owner.org_id, kind="invitation", to="x@example.org",
                        subject=f"{status}-{'recent' if recent else 'old'}", text="body",
                        status=status, next_attempt_at=at, created_at=at,
                        sent_at=at if status == "sent" else None,
                    )
                )  # fmt: skip
        await session.commit()
    worker = CleanupWorker(
        settings.model_copy(update={"mail_retention_days": 30, "cleanup_batch_size": 1}),
        sessionmaker,
    )
    assert await worker.run_once() == 2
    async with sessionmaker() as session:
        left = (await session.execute(select(MailOutbox.subject))).scalars().all()
    kept = ["sent-recent", "failed-recent", "queued-old", "queued-recent", "sending-old"]
    assert sorted(left) == sorted([*kept, "sending-recent"])
