"""Links by e-mail through a real SMTP server: choose a password, sign in; once, and briefly."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_user
from tests.server.mail.smtp_servers import Certificate, SmtpServer
from tests.server.web.dashboard import PASSWORD, form_token, post_form, sign_in
from tests.server.web.mailbox import link_in, mail_to, use_smtp_server
from wiremesh.server.auth import links
from wiremesh.server.auth.links import LinkPurpose
from wiremesh.server.auth.models import SignInLink
from wiremesh.server.config import Settings
from wiremesh.server.mail import service as mail_service
from wiremesh.server.mail.models import MailOutbox
from wiremesh.server.mail.service import SMTPSettingsInput
from wiremesh.server.tenancy import SERVER_SCOPE
from wiremesh.server.web.signin.throttle import LINK_MAILS_BURST

NEW_PASSWORD = "a much better passphrase"


async def test_a_forgotten_password_is_replaced_through_the_mailed_link(
    browser: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_server: SmtpServer,
    smtp_certificate: Certificate,
) -> None:
    async with sessionmaker() as session:
        await make_user(session, email="gina@example.com", password=PASSWORD)
        await use_smtp_server(session, settings, SERVER_SCOPE, smtp_server, smtp_certificate)
        await session.commit()

    asked = await post_form(
        browser, "/password/forgot", "/password/forgot", {"email": "gina@example.com"}
    )
    assert asked.status_code == 200
    assert "a link is on its way" in asked.text
    link = link_in(await mail_to(smtp_server, "gina@example.com"), "/password/choose")

    page = await browser.get(link)
    assert page.status_code == 200
    assert "gina@example.com" in page.text
    token = link.split("token=", 1)[1]
    weak = await post_form(browser, link, "/password/choose", {"token": token, "password": "short"})
    assert weak.status_code == 422
    chosen = await post_form(
        browser, link, "/password/choose", {"token": token, "password": NEW_PASSWORD}
    )
    assert chosen.status_code == 303
    assert "wiremesh_session" in browser.cookies

    # Once: the link is spent, and the stored mail no longer holds its token.
    assert (await browser.get(link)).status_code == 404
    async with sessionmaker() as session:
        mail = (await session.execute(select(MailOutbox))).scalar_one()
        assert token not in mail.text
        assert mail.html is not None
        assert token not in mail.html
        assert links.USED_MARK in mail.text
    # The old password is gone, the new one works.
    browser.cookies.clear()
    old = await post_form(
        browser, "/sign-in", "/sign-in", {"email": "gina@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    await sign_in(browser, "gina@example.com", NEW_PASSWORD)


async def test_a_sign_in_link_signs_in_once_and_a_stranger_learns_nothing(
    browser: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    smtp_server: SmtpServer,
    smtp_certificate: Certificate,
) -> None:
    async with sessionmaker() as session:
        await make_user(session, email="hal@example.com")  # no password: links only
        await use_smtp_server(session, settings, SERVER_SCOPE, smtp_server, smtp_certificate)
        await session.commit()

    unknown = await post_form(
        browser, "/sign-in/email", "/sign-in/email", {"email": "nobody@example.com"}
    )
    known = await post_form(
        browser, "/sign-in/email", "/sign-in/email", {"email": "hal@example.com"}
    )
    assert unknown.status_code == known.status_code == 200
    assert unknown.text == known.text
    link = link_in(await mail_to(smtp_server, "hal@example.com"), "/sign-in/link")
    assert all("nobody@example.com" not in r for r in smtp_server.inbox.recipients)

    # Opening the link (a mail scanner would) does not spend it; the button does.
    assert (await browser.get(link)).status_code == 200
    assert (await browser.get(link)).status_code == 200
    token = link.split("token=", 1)[1]
    used = await post_form(browser, link, "/sign-in/link", {"token": token})
    assert used.status_code == 303
    assert (await browser.get("/orgs")).status_code == 200
    browser.cookies.clear()
    replay = await browser.post(
        "/sign-in/link", data={"csrf": await form_token(browser, "/sign-in"), "token": token}
    )
    assert replay.status_code == 404


async def test_an_expired_or_replaced_link_opens_nothing(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, email="ivy@example.com")
    _expired, expired = await links.issue_link(
        session, user, LinkPurpose.PASSWORD, ttl=timedelta(seconds=-1)
    )
    _first, first = await links.issue_link(
        session, user, LinkPurpose.PASSWORD, ttl=timedelta(hours=1)
    )
    _second, second = await links.issue_link(
        session, user, LinkPurpose.PASSWORD, ttl=timedelta(hours=1)
    )
    await session.commit()
    assert (await browser.get(links.link_path(LinkPurpose.PASSWORD, expired))).status_code == 404
    assert (await browser.get(links.link_path(LinkPurpose.PASSWORD, first))).status_code == 404
    assert (await browser.get(links.link_path(LinkPurpose.PASSWORD, second))).status_code == 200
    # A password link is no sign-in link.
    assert (await browser.get(links.link_path(LinkPurpose.SIGN_IN, second))).status_code == 404
    hashes = (await session.execute(select(SignInLink.secret_hash))).scalars().all()
    assert all(token not in hashes for token in (expired, first, second))


async def test_no_mail_is_queued_when_no_smtp_server_can_reach_the_person(
    browser: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        await make_user(session, email="jo@example.com")
        await session.commit()
    asked = await post_form(
        browser, "/password/forgot", "/password/forgot", {"email": "jo@example.com"}
    )
    assert asked.status_code == 200
    async with sessionmaker() as session:
        assert (await session.execute(select(MailOutbox))).first() is None
        assert (await session.execute(select(SignInLink))).first() is None


async def test_links_to_one_address_are_limited_and_the_page_does_not_say_so(
    browser: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessionmaker() as session:
        await make_user(session, email="kim@example.com")
        await mail_service.put_settings(
            session,
            settings,
            SERVER_SCOPE,
            SMTPSettingsInput(smtp_server="127.0.0.1", smtp_port=9, from_email="a@example.com"),
        )
        await session.commit()
    pages = [
        await post_form(browser, "/sign-in/email", "/sign-in/email", {"email": "kim@example.com"})
        for _ in range(LINK_MAILS_BURST + 2)
    ]
    assert {page.status_code for page in pages} == {200}
    assert len({page.text for page in pages}) == 1
    async with sessionmaker() as session:
        mails = (await session.execute(select(MailOutbox))).scalars().all()
    assert len(mails) == LINK_MAILS_BURST
