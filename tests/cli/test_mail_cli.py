"""`wiremesh mail`: list the outbox by org and state; queue a failed mail again."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, ok, query
from wiremesh.server.config import Settings
from wiremesh.server.mail import outbox
from wiremesh.server.mail.models import MailOutbox
from wiremesh.server.mail.render import RenderedMail
from wiremesh.server.orgs.models import Organization

pytestmark = pytest.mark.usefixtures("cli_database")


def seed_mails(settings: Settings) -> dict[str, int]:
    """Two orgs; a sent and a failed mail in acme, a queued one in beta, one global."""

    async def work(session: AsyncSession) -> dict[str, int]:
        ids: dict[str, int] = {}
        acme = Organization(name="acme", network_cidr="100.64.0.0/24")
        beta = Organization(name="beta", network_cidr="100.64.1.0/24")
        session.add_all([acme, beta])
        await session.flush()
        for key, org_id, status in [
            ("acme_sent", acme.id, "sent"),
            ("acme_failed", acme.id, "failed"),
            ("beta_queued", beta.id, "queued"),
            ("global", None, "queued"),
        ]:
            row: MailOutbox = await outbox.enqueue(
                session,
                org_id=org_id,
                kind="test",
                to=f"{key}@example.org",
                rendered=RenderedMail(subject=key, text="secret body", html="<p>secret body</p>"),
            )
            row.status = status
            if status == "failed":
                row.attempts = 10
                row.last_outcome = "rejected"
                row.last_error = "550 no such mailbox"
            ids[key] = row.id
        await session.commit()
        return ids

    return query(settings, work)


def test_list_filters_by_org_and_status(settings: Settings) -> None:
    ids = seed_mails(settings)
    everything = json.loads(ok("mail", "list", "--json"))
    assert [m["id"] for m in everything] == sorted(ids.values(), reverse=True)
    assert all("text" not in m and "html" not in m for m in everything)
    acme = json.loads(ok("mail", "list", "--org", "acme", "--json"))
    assert {m["subject"] for m in acme} == {"acme_sent", "acme_failed"}
    failed = json.loads(ok("mail", "list", "--org", "acme", "--status", "failed", "--json"))
    assert [(m["id"], m["last_error"]) for m in failed] == [
        (ids["acme_failed"], "550 no such mailbox")
    ]
    table = ok("mail", "list", "--status", "failed")
    assert "acme_failed" in table
    assert "secret body" not in table
    bad = invoke("mail", "list", "--status", "lost")
    assert bad.exit_code == 1
    assert "--status" in bad.output
    assert invoke("mail", "list", "--org", "nope").exit_code == 1


def test_retry_queues_a_failed_mail_again(settings: Settings) -> None:
    ids = seed_mails(settings)
    ok("mail", "retry", str(ids["acme_failed"]))
    [mail] = json.loads(ok("mail", "list", "--org", "acme", "--status", "queued", "--json"))
    assert (mail["id"], mail["attempts"]) == (ids["acme_failed"], 0)
    not_failed = invoke("mail", "retry", str(ids["acme_sent"]))
    assert not_failed.exit_code == 1
    assert "mail_not_retryable" in not_failed.output
    assert invoke("mail", "retry", "999999").exit_code == 1


def test_bulk_retry_by_org_and_status(settings: Settings) -> None:
    ids = seed_mails(settings)
    out = ok("mail", "retry", "--org", "beta", "--status", "failed")
    assert "0 failed mail(s)" in out
    out = ok("mail", "retry", "--org", "acme")
    assert "1 failed mail(s)" in out
    [mail] = json.loads(ok("mail", "list", "--org", "acme", "--status", "queued", "--json"))
    assert (mail["id"], mail["attempts"]) == (ids["acme_failed"], 0)
    # Queued mails: due now, instead of after their backoff; every org without --org.
    assert "3 queued mail(s)" in ok("mail", "retry", "--status", "queued")
    bad = invoke("mail", "retry", "--status", "sent")
    assert bad.exit_code == 1
    assert "--status" in bad.output
