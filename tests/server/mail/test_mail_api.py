"""Test mails: sent through exactly the configuration the org uses; the answer said plainly."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.mail.helpers import API, PASSWORD, make_world, outbox_rows, smtp_body
from tests.server.mail.smtp_servers import Certificate, SilentServer, SmtpServer
from tests.support.ports import free_port
from wiremesh.server.mail import outbox
from wiremesh.server.mail.api import get_mail_transport
from wiremesh.server.mail.render import RenderedMail
from wiremesh.server.mail.transport import SmtpTransport


@pytest.fixture
async def quick_transport(app: FastAPI) -> AsyncIterator[None]:
    app.dependency_overrides[get_mail_transport] = lambda: SmtpTransport(timeout=0.5)
    yield
    app.dependency_overrides.pop(get_mail_transport, None)


async def test_test_mail_goes_through_the_org_config_or_the_global_one(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    world = await make_world(session)
    own = smtp_servers(mode="starttls")
    shared = smtp_servers(mode="implicit")
    await client.put(
        f"{API}/smtp/global", json=smtp_body(shared, certificate), headers=world.server_admin
    )
    await client.put(
        f"{API}/orgs/{world.a.id}/smtp", json=smtp_body(own, certificate), headers=world.a.admin
    )

    a = await client.post(
        f"{API}/orgs/{world.a.id}/smtp/test", json={"to": "ops@example.org"}, headers=world.a.admin
    )
    assert a.status_code == 200, a.text
    assert a.json()["delivered"] is True
    assert a.json()["outcome"] == "delivered"
    assert (a.json()["scope"], a.json()["smtp_port"], a.json()["tls"]) == (
        "org",
        own.port,
        "starttls",
    )
    [message] = own.inbox.messages
    assert message["To"] == "ops@example.org"
    assert world.a.name in str(message["Subject"])

    b = await client.post(
        f"{API}/orgs/{world.b.id}/smtp/test", json={"to": "ops@example.org"}, headers=world.b.owner
    )
    assert (b.json()["outcome"], b.json()["scope"], b.json()["tls"]) == (
        "delivered",
        "global",
        "implicit",
    )
    assert len(shared.inbox.messages) == 1

    glob = await client.post(
        f"{API}/smtp/global/test", json={"to": "root@example.org"}, headers=world.server_admin
    )
    assert glob.json()["delivered"] is True
    assert len(shared.inbox.messages) == 2

    rows = await outbox_rows(sessionmaker, kind="test")
    assert [(r.org_id, r.status, r.attempts) for r in rows] == [
        (world.a.id, "sent", 1), (world.b.id, "sent", 1), (None, "sent", 1),
    ]  # fmt: skip
    for response in (a, b, glob):
        assert PASSWORD not in response.text
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


async def test_test_mail_reports_auth_tls_and_connection_failures(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
    silent_server: SilentServer,
    quick_transport: None,
) -> None:
    world = await make_world(session)
    server = smtp_servers(mode="starttls")
    url = f"{API}/orgs/{world.a.id}/smtp"
    test_url = f"{url}/test"
    cases = [
        (smtp_body(server, certificate, smtp_password="wrong-one"), "auth_failed"),
        (smtp_body(server, None), "tls_failed"),
        (smtp_body(server, certificate, smtp_port=free_port()), "connection_failed"),
        (smtp_body(server, certificate, smtp_port=silent_server.port), "connection_failed"),
    ]
    for body, outcome in cases:
        assert (await client.put(url, json=body, headers=world.a.admin)).status_code == 200
        response = await client.post(
            test_url, json={"to": "ops@example.org"}, headers=world.a.admin
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["delivered"], result["outcome"]) == (False, outcome), result
        assert result["message"]
        assert "wrong-one" not in response.text
    assert server.inbox.messages == []
    rows = await outbox_rows(sessionmaker, kind="test")
    assert [(r.status, r.last_outcome) for r in rows] == [
        ("failed", outcome) for _body, outcome in cases
    ]


async def test_test_mail_without_any_configuration_is_a_clear_error(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    response = await client.post(
        f"{API}/orgs/{world.a.id}/smtp/test", json={"to": "ops@example.org"}, headers=world.a.admin
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "smtp_not_configured"
    glob = await client.post(
        f"{API}/smtp/global/test", json={"to": "ops@example.org"}, headers=world.server_admin
    )
    assert glob.json()["error"]["code"] == "smtp_not_configured"


async def test_test_mail_access_and_input(client: httpx.AsyncClient, session: AsyncSession) -> None:
    world = await make_world(session)
    url = f"{API}/orgs/{world.a.id}/smtp/test"
    assert (
        await client.post(url, json={"to": "x@example.org"}, headers=world.a.member)
    ).status_code == 403
    assert (
        await client.post(url, json={"to": "x@example.org"}, headers=world.b.admin)
    ).status_code == 404
    assert (
        await client.post(
            f"{API}/smtp/global/test", json={"to": "x@example.org"}, headers=world.a.owner
        )
    ).status_code == 403
    bad = await client.post(url, json={"to": "not-an-address"}, headers=world.a.admin)
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "validation_error"


async def seed_mail(
    sessionmaker: async_sessionmaker[AsyncSession], org_id: int | None, status: str, subject: str
) -> int:
    async with sessionmaker() as session:
        row = await outbox.enqueue(
            session,
            org_id=org_id,
            kind="test",
            to="someone@example.org",
            rendered=RenderedMail(subject=subject, text="private body", html="<p>private</p>"),
        )
        row.status = status
        row.attempts = 3
        if status == "failed":
            row.last_outcome, row.last_error = "rejected", "550 5.1.1 no such mailbox here"
        await session.commit()
        return row.id


async def test_failed_mails_are_visible_to_their_admins(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await make_world(session)
    a_failed = await seed_mail(sessionmaker, world.a.id, "failed", "a failed")
    a_sent = await seed_mail(sessionmaker, world.a.id, "sent", "a sent")
    b_failed = await seed_mail(sessionmaker, world.b.id, "failed", "b failed")
    global_failed = await seed_mail(sessionmaker, None, "failed", "global failed")

    failed = await client.get(
        f"{API}/orgs/{world.a.id}/mail", params={"status": "failed"}, headers=world.a.admin
    )
    assert failed.status_code == 200
    [listed] = failed.json()
    assert listed["id"] == a_failed
    assert (listed["status"], listed["attempts"], listed["last_outcome"]) == (
        "failed",
        3,
        "rejected",
    )
    assert "550" in listed["last_error"]
    assert "private" not in failed.text  # bodies are not listed
    everything = await client.get(f"{API}/orgs/{world.a.id}/mail", headers=world.a.owner)
    assert [m["id"] for m in everything.json()] == [a_sent, a_failed]

    admin_view = await client.get(
        f"{API}/mail", params={"status": "failed"}, headers=world.server_admin
    )
    assert [m["id"] for m in admin_view.json()] == [global_failed, b_failed, a_failed]
    one_org = await client.get(
        f"{API}/mail", params={"org_id": world.b.id}, headers=world.server_admin
    )
    assert [m["id"] for m in one_org.json()] == [b_failed]
    paged = await client.get(
        f"{API}/mail", params={"limit": 1, "offset": 1}, headers=world.server_admin
    )
    assert [m["id"] for m in paged.json()] == [b_failed]

    assert (await client.get(f"{API}/mail", headers=world.a.admin)).status_code == 403
    member = await client.get(f"{API}/orgs/{world.a.id}/mail", headers=world.a.member)
    assert member.status_code == 403
    stranger = await client.get(f"{API}/orgs/{world.a.id}/mail", headers=world.b.admin)
    assert stranger.status_code == 404
    bad = await client.get(f"{API}/mail", params={"status": "lost"}, headers=world.server_admin)
    assert bad.status_code == 422
