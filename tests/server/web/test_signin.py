"""Signing in with a password, the session cookie, signing out, and the failure budget."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_member, make_org, make_user
from tests.server.web.dashboard import PASSWORD, csrf_of, form_token, post_form, sign_in
from wiremesh.server.app import create_app
from wiremesh.server.auth.models import WebSession
from wiremesh.server.config import Settings
from wiremesh.server.web.signin.throttle import ACCOUNT_BURST


async def test_a_page_sends_a_stranger_to_sign_in_and_back(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/orgs?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=%2Forgs%3Fx%3D1"


async def test_password_sign_in_sets_a_strict_cookie_and_opens_pages(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    org = await make_org(session, name="acme")
    user = await make_user(session, email="ann@example.com", password=PASSWORD)
    await make_member(session, org, user)
    await session.commit()

    token = await form_token(browser, "/sign-in")
    response = await browser.post(
        "/sign-in",
        data={"csrf": token, "email": "Ann@Example.com", "password": PASSWORD, "next": "/orgs"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/orgs"
    cookie = response.headers["set-cookie"]
    assert "wiremesh_session=wms_" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http in this test; https sets it (below)
    page = await browser.get("/orgs")
    assert page.status_code == 200
    assert "acme" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    # The session row keeps a hash, never the cookie's secret.
    stored = (await session.execute(select(WebSession))).scalar_one()
    assert stored.secret_hash not in cookie
    assert browser.cookies["wiremesh_session"] != stored.secret_hash


async def test_cookies_are_secure_behind_an_https_public_url(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Behind a TLS-terminating proxy the server sees http, but its public URL is https."""
    async with sessionmaker() as session:
        await make_user(session, email="sec@example.com", password=PASSWORD)
        await session.commit()
    app = create_app(
        settings.model_copy(update={"public_url": "https://mesh.example.com"}),
        migrate_on_start=False,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w.test") as client:
            page = await client.get("/sign-in")
            assert "Secure" in page.headers["set-cookie"]
            # A client that would send a Secure cookie over http (the proxy's hop):
            client.cookies.set("wiremesh_presession", page.cookies["wiremesh_presession"])
            response = await client.post(
                "/sign-in",
                data={"csrf": csrf_of(page.text), "email": "sec@example.com", "password": PASSWORD},
            )
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


async def test_a_wrong_password_and_an_unknown_address_look_the_same(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_user(session, email="bob@example.com", password=PASSWORD)
    await session.commit()
    wrong = await post_form(
        browser, "/sign-in", "/sign-in", {"email": "bob@example.com", "password": "nope-nope-nope"}
    )
    unknown = await post_form(
        browser, "/sign-in", "/sign-in", {"email": "nobody@example.com", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong e-mail address or password." in wrong.text
    assert "Wrong e-mail address or password." in unknown.text
    assert "wiremesh_session" not in browser.cookies
    assert (await session.execute(select(WebSession))).first() is None


async def test_a_user_without_a_password_cannot_sign_in_with_an_empty_one(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_user(session, email="token-only@example.com")
    await session.commit()
    response = await post_form(
        browser, "/sign-in", "/sign-in", {"email": "token-only@example.com", "password": ""}
    )
    assert response.status_code in (401, 422)
    assert "wiremesh_session" not in browser.cookies


async def test_an_address_that_keeps_failing_is_refused_before_the_check(
    browser: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    await make_user(session, email="carol@example.com", password=PASSWORD)
    await session.commit()
    statuses = []
    for attempt in range(settings.auth_failure_burst + 1):
        # A different account each time: the address's budget is what runs out.
        response = await post_form(
            browser,
            "/sign-in",
            "/sign-in",
            {"email": f"u{attempt}@example.com", "password": "x" * 12},
        )
        statuses.append(response.status_code)
    assert statuses == [401] * settings.auth_failure_burst + [429]
    # The right password is refused too while the budget is spent: a guesser cannot go on.
    right = await post_form(
        browser, "/sign-in", "/sign-in", {"email": "carol@example.com", "password": PASSWORD}
    )
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) >= 1
    assert "wiremesh_session" not in browser.cookies


async def test_an_account_guessed_from_many_addresses_is_refused(
    app: FastAPI, session: AsyncSession
) -> None:
    await make_user(session, email="frank@example.com", password=PASSWORD)
    await session.commit()

    async def attempt(number: int, password: str) -> int:
        transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{number}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://w.test") as client:
            response = await post_form(
                client, "/sign-in", "/sign-in", {"email": "frank@example.com", "password": password}
            )
            return response.status_code

    statuses = [await attempt(n, "wrong-password") for n in range(ACCOUNT_BURST)]
    assert statuses == [401] * ACCOUNT_BURST
    assert await attempt(200, PASSWORD) == 429


async def test_sign_out_ends_the_session_on_the_server(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_user(session, email="dan@example.com", password=PASSWORD)
    await session.commit()
    await sign_in(browser, "dan@example.com")
    stolen = browser.cookies["wiremesh_session"]
    page = await browser.get("/orgs")
    response = await browser.post("/sign-out", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 303
    ended = (await session.execute(select(WebSession))).scalar_one()
    assert ended.ended_at is not None
    await session.rollback()  # SQLite: end this read before the app writes again
    # The old cookie, replayed, opens nothing.
    browser.cookies.set("wiremesh_session", stolen)
    again = await browser.get("/orgs")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/sign-in")


async def test_next_never_leaves_the_site(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_user(session, email="eve@example.com", password=PASSWORD)
    await session.commit()
    for target in ("//evil.example.com/x", "https://evil.example.com/", "/\\evil.example.com"):
        browser.cookies.clear()
        token = await form_token(browser, "/sign-in")
        response = await browser.post(
            "/sign-in",
            data={"csrf": token, "email": "eve@example.com", "password": PASSWORD, "next": target},
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/"
