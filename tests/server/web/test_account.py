"""Changing one's password on the dashboard: the current one is asked, others are signed out."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_user
from tests.server.web.dashboard import PASSWORD, form_token, sign_in
from wiremesh.server.auth import websessions
from wiremesh.server.auth.passwords import password_matches
from wiremesh.server.users.models import User
from wiremesh.server.web.templating import SESSION_COOKIE

NEW_PASSWORD = "a longer passphrase now"
PAGE = "/account/password"


def second_browser(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("192.0.2.11", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://wiremesh.test")


async def stored_hash(sessionmaker: async_sessionmaker[AsyncSession], user_id: int) -> str | None:
    """Read in a short transaction of its own (on SQLite an open one holds the write lock)."""
    async with sessionmaker() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user.password_hash


async def new_user(
    sessionmaker: async_sessionmaker[AsyncSession], email: str, password: str | None
) -> int:
    async with sessionmaker() as session:
        user = await make_user(session, email=email, password=password)
        await session.commit()
        return user.id


async def test_a_change_needs_the_current_password_and_signs_out_other_sessions(
    app: FastAPI,
    browser: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await new_user(sessionmaker, "ann@example.com", PASSWORD)
    await sign_in(browser, "ann@example.com")
    async with second_browser(app) as other:
        await sign_in(other, "ann@example.com")
        token = await form_token(browser, PAGE)

        wrong = await browser.post(
            PAGE,
            data={"csrf": token, "current_password": "not it at all", "new_password": NEW_PASSWORD},
        )
        assert wrong.status_code == 401
        assert "not right" in wrong.text
        weak = await browser.post(
            PAGE, data={"csrf": token, "current_password": PASSWORD, "new_password": "short"}
        )
        assert weak.status_code == 422
        assert password_matches(PASSWORD, await stored_hash(sessionmaker, user_id))
        assert (await other.get("/orgs")).status_code == 200  # nothing changed yet

        changed = await browser.post(
            PAGE, data={"csrf": token, "current_password": PASSWORD, "new_password": NEW_PASSWORD}
        )
        assert changed.status_code == 303
        assert changed.headers["location"] == f"{PAGE}?changed=1"
        assert "changed" in (await browser.get(changed.headers["location"])).text
        assert password_matches(NEW_PASSWORD, await stored_hash(sessionmaker, user_id))
        # This browser got a fresh session; the other one was signed out.
        assert (await browser.get("/orgs")).status_code == 200
        assert (await other.get("/orgs")).status_code == 303

    async with second_browser(app) as fresh:
        await sign_in(fresh, "ann@example.com", NEW_PASSWORD)


async def test_without_a_session_or_a_csrf_token_nothing_changes(
    browser: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    user_id = await new_user(sessionmaker, "bob@example.com", PASSWORD)
    stranger = await browser.get(PAGE)
    assert stranger.status_code == 303
    assert stranger.headers["location"].startswith("/sign-in")
    await sign_in(browser, "bob@example.com")
    forged = await browser.post(
        PAGE, data={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert forged.status_code == 403
    assert password_matches(PASSWORD, await stored_hash(sessionmaker, user_id))


async def test_someone_without_a_password_is_sent_to_the_mailed_link(
    browser: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Signed in by an e-mailed link, never chose a password: there is none to confirm."""
    user_id = await new_user(sessionmaker, "cy@example.com", None)
    async with sessionmaker() as session:
        user = await session.get(User, user_id)
        assert user is not None
        _row, secret = await websessions.start_session(session, user)
        await session.commit()
    browser.cookies.set(SESSION_COOKIE, secret)
    page = await browser.get(PAGE)
    assert page.status_code == 200
    assert 'name="current_password"' not in page.text
    assert 'href="/password/forgot"' in page.text
