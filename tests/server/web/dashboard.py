"""Driving the dashboard's forms over HTTP, as a browser without scripts would."""

from __future__ import annotations

import re

import httpx

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def form_token(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def post_form(
    client: httpx.AsyncClient, page: str, action: str, data: dict[str, str]
) -> httpx.Response:
    """Open ``page``, take its CSRF token, post ``data`` to ``action``."""
    token = await form_token(client, page)
    return await client.post(action, data={"csrf": token, **data})


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> None:
    response = await post_form(
        client, "/sign-in", "/sign-in", {"email": email, "password": password}
    )
    assert response.status_code == 303, response.text
    assert "wiremesh_session" in client.cookies
