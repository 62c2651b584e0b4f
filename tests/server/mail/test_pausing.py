"""A relay that refuses an org's login: the org's settings pause instead of hammering it, the
org's admins are told through the global settings, and saving the settings resumes."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.mail.helpers import API, PASSWORD, make_world, outbox_rows, smtp_body
from tests.server.mail.smtp_servers import Certificate, SmtpServer
from tests.server.mail.test_delivery import FAST, configure, queue
from wiremesh.server.config import Settings
from wiremesh.server.mail import repository
from wiremesh.server.mail.models import MailOutbox
from wiremesh.server.tenancy import OrgScope
from wiremesh.server.workers.mail_outbox import MailOutboxWorker


async def test_a_refused_login_pauses_the_org_and_tells_its_admins(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    world = await make_world(session)
    relay = smtp_servers(mode="starttls")
    fallback = smtp_servers(mode="implicit")
    await configure(sessionmaker, settings, None, fallback, certificate)
    await configure(sessionmaker, settings, world.a.id, relay, certificate, smtp_password="wrong")
    for_a = [await queue(sessionmaker, world.a.id, subject=f"a-{n}") for n in range(6)]
    for_b = await queue(sessionmaker, world.b.id, subject="for b")

    worker = MailOutboxWorker(sessionmaker, settings, options=FAST)
    for _ in range(5):
        await worker.run_once()

    # At most one failed login per send slot of the org (two), however many rounds.
    assert 1 <= len(relay.inbox.failed_logins) <= FAST.max_in_flight_per_org
    assert set(relay.inbox.failed_logins) == {"PLAIN"}
    assert relay.inbox.messages == []
    async with sessionmaker() as db:
        paused = await repository.get_settings(db, OrgScope(world.a.id))
    assert paused is not None
    assert paused.paused_at is not None
    assert "535" in (paused.paused_reason or "")
    rows = {row.id: row for row in await outbox_rows(sessionmaker)}
    assert {rows[mail_id].status for mail_id in for_a} == {"queued"}
    assert rows[for_b].status == "sent"

    # The org's owner and admin, once each, through the global settings.
    alerts = [m for m in fallback.inbox.messages if "paused" in str(m["Subject"])]
    assert sorted(str(m["To"]) for m in alerts) == sorted(
        [world.a.owner_email, world.a.admin_email]
    )
    body = alerts[0].get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert f"127.0.0.1:{relay.port}" in text
    assert "refused its login" in text
    assert "535" in text

    # The right password: saving resumes, and every held mail goes out.
    await configure(sessionmaker, settings, world.a.id, relay, certificate, smtp_password=PASSWORD)
    await worker.run_once()
    assert sorted(str(m["Subject"]) for m in relay.inbox.messages) == [f"a-{n}" for n in range(6)]
    assert len(relay.inbox.failed_logins) <= FAST.max_in_flight_per_org


async def test_resume_and_retry_through_the_api(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    """Resume ends a pause without a change; retry brings failed mails back, one or all of
    an org; another org's admin can do neither to this org's mails."""
    world = await make_world(session)
    relay = smtp_servers(mode="starttls")
    org_smtp = f"{API}/orgs/{world.a.id}/smtp"
    put = await client.put(
        org_smtp, json=smtp_body(relay, certificate, from_name="Alpha Ops"), headers=world.a.admin
    )
    assert put.status_code == 200, put.text
    assert (put.json()["from_name"], put.json()["paused_at"]) == ("Alpha Ops", None)
    not_paused = await client.post(f"{org_smtp}/resume", headers=world.a.admin)
    assert (not_paused.status_code, not_paused.json()["error"]["code"]) == (409, "smtp_not_paused")

    async with sessionmaker() as db:
        row = await repository.get_settings(db, OrgScope(world.a.id))
        assert row is not None
        row.paused_at = row.updated_at
        row.paused_reason = "535 no"
        await db.commit()
    assert (await client.get(org_smtp, headers=world.a.admin)).json()["paused_reason"] == "535 no"
    resumed = await client.post(f"{org_smtp}/resume", headers=world.a.admin)
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["paused_at"], resumed.json()["paused_reason"]) == (None, None)

    # Failed mails of both orgs.
    ids = {
        org: [await queue(sessionmaker, org) for _ in range(2)] for org in (world.a.id, world.b.id)
    }
    async with sessionmaker() as db:
        await db.execute(update(MailOutbox).values(status="failed", attempts=7))
        await db.commit()
    first_a, second_a = ids[world.a.id]
    first_b, _ = ids[world.b.id]

    one = await client.post(f"{API}/orgs/{world.a.id}/mail/{first_a}/retry", headers=world.a.admin)
    assert one.status_code == 200, one.text
    assert (one.json()["status"], one.json()["attempts"]) == ("queued", 0)
    other_org = await client.post(
        f"{API}/orgs/{world.a.id}/mail/{first_b}/retry", headers=world.a.admin
    )
    assert (other_org.status_code, other_org.json()["error"]["code"]) == (404, "not_found")
    not_admin = await client.post(
        f"{API}/orgs/{world.b.id}/mail/{first_b}/retry", headers=world.a.admin
    )
    assert not_admin.status_code == 404  # another org's: not even its existence is told

    bulk = await client.post(
        f"{API}/orgs/{world.a.id}/mail/retry", json={"status": "failed"}, headers=world.a.admin
    )
    assert (bulk.status_code, bulk.json()) == (200, {"retried": 1})
    rows = {row.id: row for row in await outbox_rows(sessionmaker)}
    assert rows[second_a].attempts == 0
    assert {rows[mail_id].status for mail_id in ids[world.b.id]} == {"failed"}
    bad = await client.post(
        f"{API}/orgs/{world.a.id}/mail/retry", json={"status": "sent"}, headers=world.a.admin
    )
    assert bad.status_code == 422

    everything = await client.post(
        f"{API}/mail/retry", json={"status": "failed"}, headers=world.server_admin
    )
    assert everything.json() == {"retried": 2}
