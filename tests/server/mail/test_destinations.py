"""Organizations' SMTP destinations: no private addresses unless allowed, at save and at
connect; the test mail is no port scanner (one answer for refused and filtered, a budget)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.server.mail.helpers import API, PASSWORD, make_world, smtp_body
from tests.server.mail.smtp_servers import Certificate, SilentServer, SmtpServer
from tests.support.ports import free_port
from wiremesh.server.config import Settings
from wiremesh.server.mail import service
from wiremesh.server.mail.api import get_mail_transport
from wiremesh.server.mail.models import SMTPSettings, TlsMode
from wiremesh.server.mail.outcomes import Outcome
from wiremesh.server.mail.service import SMTPSettingsInput
from wiremesh.server.mail.transport import FakeTransport, OutgoingMail, ResolvedSMTP, SmtpTransport
from wiremesh.server.tenancy import OrgScope

PRIVATE = ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254",
           "100.64.0.7", "0.0.0.0", "::1", "fd00::25", "fe80::1", "::ffff:127.0.0.1"]  # fmt: skip


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The default of a real server: organizations may not use private hosts."""
    return settings.model_copy(update={"smtp_allow_private_hosts": False, "smtp_test_burst": 2})


@pytest.fixture
async def quick_transport(app: FastAPI) -> AsyncIterator[None]:
    app.dependency_overrides[get_mail_transport] = lambda: SmtpTransport(timeout=0.5)
    yield
    app.dependency_overrides.pop(get_mail_transport, None)


def plain(host: str, port: int) -> dict[str, object]:
    return smtp_body(
        smtp_server=host, smtp_port=port, smtp_username=None, smtp_password=None, use_tls=False
    )


async def test_private_destinations_are_refused_at_save(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    for host in [*PRIVATE, "localhost"]:  # localhost: a name that resolves to loopback
        refused = await client.put(
            f"{API}/orgs/{world.a.id}/smtp", json=plain(host, 25), headers=world.a.admin
        )
        assert refused.status_code == 422, (host, refused.text)
        assert refused.json()["error"]["code"] == "smtp_destination_forbidden"
    assert (await session.execute(select(SMTPSettings))).first() is None  # nothing stored
    await session.rollback()
    public = await client.put(
        f"{API}/orgs/{world.a.id}/smtp", json=plain("9.9.9.9", 25), headers=world.a.admin
    )
    assert public.status_code == 200, public.text
    operators = await client.put(
        f"{API}/smtp/global", json=plain("127.0.0.1", 25), headers=world.server_admin
    )
    assert operators.status_code == 200, operators.text  # the global settings are exempt


async def test_a_name_resolving_to_loopback_is_refused_at_connect(
    client: httpx.AsyncClient,
    session: AsyncSession,
    smtp_servers: Callable[..., SmtpServer],
) -> None:
    """Saved while it pointed elsewhere (stored directly here), checked again at send time."""
    world = await make_world(session)
    server = smtp_servers(mode="starttls")
    session.add(
        SMTPSettings(
            org_id=world.a.id,
            smtp_server="localhost",
            smtp_port=server.port,
            from_email="it@example.org",
            use_tls=False,
        )
    )
    await session.commit()
    answer = await client.post(
        f"{API}/orgs/{world.a.id}/smtp/test", json={"to": "x@example.org"}, headers=world.a.admin
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "smtp_destination_forbidden"
    assert server.inbox.messages == []

    config = ResolvedSMTP(
        settings_id=1, org_id=world.a.id, host="localhost", port=server.port, username=None,
        password=None, from_email="it@example.org", tls=TlsMode.NONE, verify_certificate=True,
        restrict_destination=True,
    )  # fmt: skip
    mail = OutgoingMail(to="x@example.org", subject="s", text="t")
    report = await SmtpTransport(timeout=2).send(config, mail)
    assert report.outcome is Outcome.DESTINATION_FORBIDDEN
    assert server.inbox.messages == []


async def test_private_destinations_work_when_allowed(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    smtp_servers: Callable[..., SmtpServer],
    certificate: Certificate,
) -> None:
    world = await make_world(session)
    server = smtp_servers(mode="starttls")
    allowed = settings.model_copy(update={"smtp_allow_private_hosts": True})
    saved = await service.put_settings(
        session, allowed, OrgScope(world.a.id), SMTPSettingsInput(
            smtp_server="localhost", smtp_port=server.port, from_email="it@example.org",
            smtp_username="mailer", smtp_password=PASSWORD, ca_certificate=certificate.pem,
        ),
    )  # fmt: skip
    assert saved[1]
    config = await service.resolve(session, allowed, world.a.id)
    assert not config.restrict_destination
    report = await SmtpTransport(timeout=2).send(
        config, OutgoingMail(to="x@example.org", subject="s", text="t")
    )
    assert report.delivered, report
    assert len(server.inbox.messages) == 1


async def test_refused_and_filtered_ports_give_one_answer(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    silent_server: SilentServer,
    quick_transport: None,
) -> None:
    """A closed port refuses at once, a silent one times out: an org admin sees the same."""
    world = await make_world(session)
    answers = []
    for port in (free_port(), silent_server.port):
        config = ResolvedSMTP(
            settings_id=1, org_id=world.a.id, host="127.0.0.1", port=port, username=None,
            password=None, from_email="it@example.org", tls=TlsMode.NONE,
            verify_certificate=True,
        )  # fmt: skip
        report = await SmtpTransport(timeout=0.5).send(
            config, OutgoingMail(to="x@example.org", subject="s", text="t")
        )
        answers.append((report.outcome, report.message.replace(str(port), "PORT")))
    assert answers[0] == answers[1]
    assert answers[0][0] is Outcome.CONNECTION_FAILED

    global_config = ResolvedSMTP(
        settings_id=1, org_id=None, host="127.0.0.1", port=free_port(), username=None,
        password=None, from_email="it@example.org", tls=TlsMode.NONE, verify_certificate=True,
    )  # fmt: skip
    operators = await SmtpTransport(timeout=0.5).send(
        global_config, OutgoingMail(to="x@example.org", subject="s", text="t")
    )
    assert operators.outcome is Outcome.CONNECTION_REFUSED  # the operator keeps the detail


async def test_the_test_mail_has_a_budget_per_org(
    client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    app.dependency_overrides[get_mail_transport] = FakeTransport
    world = await make_world(session)
    for headers, where in ((world.server_admin, "smtp/global"),):
        put = await client.put(f"{API}/{where}", json=plain("127.0.0.1", 25), headers=headers)
        assert put.status_code == 200, put.text

    async def test_mail(org: str, headers: dict[str, str]) -> httpx.Response:
        return await client.post(f"{API}/{org}/test", json={"to": "x@example.org"}, headers=headers)

    for _ in range(2):
        assert (await test_mail(f"orgs/{world.a.id}/smtp", world.a.admin)).status_code == 200
    limited = await test_mail(f"orgs/{world.a.id}/smtp", world.a.owner)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "too_many_test_mails"
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await test_mail(f"orgs/{world.b.id}/smtp", world.b.admin)).status_code == 200
    for _ in range(3):  # the operator's own tests are not limited
        assert (await test_mail("smtp/global", world.server_admin)).status_code == 200
    app.dependency_overrides.pop(get_mail_transport, None)
