"""Invitations from the page to the mailbox (a real SMTP server) and back to the accept page."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_member, make_org, make_user
from tests.server.mail.smtp_servers import Certificate, SmtpServer
from tests.server.web.dashboard import PASSWORD, form_token, post_form, sign_in
from tests.server.web.mailbox import link_in, mail_to, use_smtp_server
from wiremesh.server.config import Settings
from wiremesh.server.mail.models import MailOutbox
from wiremesh.server.orgs.models import Membership, OrgInvitation, OrgRole
from wiremesh.server.tenancy import OrgScope
from wiremesh.server.users.models import User


@pytest.fixture
async def org_id(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_server: SmtpServer,
    smtp_certificate: Certificate,
) -> int:
    async with sessionmaker() as session:
        org = await make_org(session, name="initech", network_cidr="100.64.3.0/24")
        owner = await make_user(session, email="boss@initech.example.com", password=PASSWORD)
        await make_member(session, org, owner, OrgRole.OWNER)
        await use_smtp_server(session, settings, OrgScope(org.id), smtp_server, smtp_certificate)
        await session.commit()
        return org.id


async def invite(browser: httpx.AsyncClient, org_id: int, email: str, role: str = "member") -> None:
    await sign_in(browser, "boss@initech.example.com")
    page = f"/orgs/{org_id}/invitations"
    sent = await post_form(browser, page, page, {"email": email, "role": role})
    assert sent.status_code == 303, sent.text
    assert email in (await browser.get(page)).text
    browser.cookies.clear()


async def test_a_new_address_accepts_by_creating_its_account(
    browser: httpx.AsyncClient,
    org_id: int,
    smtp_server: SmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await invite(browser, org_id, "newbie@example.com", "admin")
    link = link_in(await mail_to(smtp_server, "newbie@example.com"), "/invitations/accept")
    token = link.split("token=", 1)[1]

    page = await browser.get(link)
    assert page.status_code == 200
    assert "Create your account" in page.text
    assert "initech" in page.text
    accepted = await post_form(
        browser,
        link,
        "/invitations/accept/new-account",
        {"token": token, "name": "New Bie", "password": PASSWORD},
    )
    assert accepted.status_code == 303
    assert accepted.headers["location"] == f"/orgs/{org_id}/devices"
    assert (await browser.get(f"/orgs/{org_id}/invitations")).status_code == 200  # an admin now

    async with sessionmaker() as session:
        user = (
            await session.execute(select(User).where(User.email == "newbie@example.com"))
        ).scalar_one()
        assert user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$")
        role = (
            await session.execute(select(Membership.role).where(Membership.user_id == user.id))
        ).scalar_one()
        assert role == "admin"
        invitation = (await session.execute(select(OrgInvitation))).scalar_one()
        assert invitation.accepted_at is not None
        # Neither the invitation nor the outbox keeps the token.
        assert token not in invitation.token_hash
        mail = (await session.execute(select(MailOutbox))).scalar_one()
        assert token not in mail.text

    # The link works once.
    browser.cookies.clear()
    assert (await browser.get(link)).status_code == 404
    again = await post_form(
        browser,
        "/sign-in",
        "/invitations/accept/new-account",
        {"token": token, "name": "Again", "password": PASSWORD},
    )
    assert again.status_code == 404


async def test_an_existing_user_signs_in_and_accepts(
    browser: httpx.AsyncClient,
    org_id: int,
    smtp_server: SmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        await make_user(session, email="known@example.com", password=PASSWORD)
        await make_user(session, email="someone-else@example.com", password=PASSWORD)
        await session.commit()
    await invite(browser, org_id, "known@example.com")
    link = link_in(await mail_to(smtp_server, "known@example.com"), "/invitations/accept")
    token = link.split("token=", 1)[1]

    page = await browser.get(link)
    assert "Sign in as known@example.com to accept" in page.text
    # Signed in as someone else: the page says so, and accepting is refused.
    await sign_in(browser, "someone-else@example.com")
    assert "You are signed in as someone-else@example.com" in (await browser.get(link)).text
    wrong = await post_form(browser, link, "/invitations/accept", {"token": token})
    assert wrong.status_code == 403
    browser.cookies.clear()

    await sign_in(browser, "known@example.com")
    accepted = await post_form(browser, link, "/invitations/accept", {"token": token})
    assert accepted.status_code == 303
    assert (await browser.get(f"/orgs/{org_id}/devices")).status_code == 200


async def test_a_revoked_invitation_cannot_be_accepted(
    browser: httpx.AsyncClient, org_id: int, smtp_server: SmtpServer
) -> None:
    await invite(browser, org_id, "late@example.com")
    link = link_in(await mail_to(smtp_server, "late@example.com"), "/invitations/accept")
    await sign_in(browser, "boss@initech.example.com")
    listing = (await browser.get(f"/orgs/{org_id}/invitations")).text
    invitation_id = listing.split("/invitations/", 1)[1].split("/revoke", 1)[0]
    token = await form_token(browser, f"/orgs/{org_id}/invitations")
    revoked = await browser.post(
        f"/orgs/{org_id}/invitations/{invitation_id}/revoke", data={"csrf": token}
    )
    assert revoked.status_code == 303
    browser.cookies.clear()
    assert (await browser.get(link)).status_code == 404


async def test_inviting_without_any_smtp_settings_says_why(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    org = await make_org(session, name="nomail", network_cidr="100.64.4.0/24")
    owner = await make_user(session, email="owner@nomail.example.com", password=PASSWORD)
    await make_member(session, org, owner, OrgRole.OWNER)
    await session.commit()
    await sign_in(browser, "owner@nomail.example.com")
    page = f"/orgs/{org.id}/invitations"
    refused = await post_form(browser, page, page, {"email": "x@example.com"})
    assert refused.status_code == 409
    assert "SMTP" in refused.text
