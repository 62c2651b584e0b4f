"""SMTP settings over HTTP: who may manage which, validation, and a write-only password."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.server.mail.helpers import API, PASSWORD, make_world, smtp_body
from tests.server.mail.smtp_servers import Certificate
from wiremesh.server.mail.models import SMTPSettings


async def test_server_admin_manages_the_global_settings(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    missing = await client.get(f"{API}/smtp/global", headers=world.server_admin)
    assert missing.status_code == 404

    put = await client.put(f"{API}/smtp/global", json=smtp_body(), headers=world.server_admin)
    assert put.status_code == 200, put.text
    data = put.json()
    assert data["scope"] == "global"
    assert data["org_id"] is None
    assert data["smtp_server"] == "smtp.example.com"
    assert data["password_set"] is True
    assert data["effective_tls"] == "starttls"
    assert data["verify_certificate"] is True
    assert "smtp_password" not in data

    got = await client.get(f"{API}/smtp/global", headers=world.server_admin)
    assert got.json() == data

    deleted = await client.delete(f"{API}/smtp/global", headers=world.server_admin)
    assert deleted.status_code == 204
    assert (await client.get(f"{API}/smtp/global", headers=world.server_admin)).status_code == 404


async def test_only_server_admins_touch_the_global_settings(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    for headers in (world.a.owner, world.a.admin, world.outsider):
        assert (await client.get(f"{API}/smtp/global", headers=headers)).status_code == 403
        put = await client.put(f"{API}/smtp/global", json=smtp_body(), headers=headers)
        assert put.status_code == 403
        assert (await client.delete(f"{API}/smtp/global", headers=headers)).status_code == 403
    assert (await client.get(f"{API}/smtp/global")).status_code == 401


async def test_org_admins_manage_their_org_only(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    url = f"{API}/orgs/{world.a.id}/smtp"
    for headers in (world.a.owner, world.a.admin, world.server_admin):
        put = await client.put(url, json=smtp_body(smtp_port=2525), headers=headers)
        assert put.status_code == 200, put.text
        assert put.json()["scope"] == "org"
        assert put.json()["org_id"] == world.a.id
    member = await client.put(url, json=smtp_body(), headers=world.a.member)
    assert member.status_code == 403
    assert (await client.get(url, headers=world.a.member)).status_code == 403
    for headers in (world.b.owner, world.outsider):  # not members: the org does not exist
        assert (await client.get(url, headers=headers)).status_code == 404
        assert (await client.put(url, json=smtp_body(), headers=headers)).status_code == 404
        assert (await client.delete(url, headers=headers)).status_code == 404
    assert (
        await client.get(f"{API}/orgs/999999/smtp", headers=world.server_admin)
    ).status_code == 404
    assert (await client.delete(url, headers=world.a.admin)).status_code == 204
    assert (await client.get(url, headers=world.a.admin)).status_code == 404


async def test_password_is_stored_encrypted_and_never_returned(
    client: httpx.AsyncClient, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world = await make_world(session)
    url = f"{API}/orgs/{world.a.id}/smtp"
    put = await client.put(url, json=smtp_body(), headers=world.a.admin)
    got = await client.get(url, headers=world.a.admin)
    for response in (put, got):
        assert PASSWORD not in response.text
        assert response.json()["password_set"] is True
    stored = (await session.execute(text("SELECT smtp_password FROM smtp_settings"))).scalar_one()
    assert stored
    assert PASSWORD not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


async def test_omitted_password_is_kept_and_can_be_cleared(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    url = f"{API}/orgs/{world.a.id}/smtp"
    await client.put(url, json=smtp_body(), headers=world.a.admin)
    before = (await session.execute(select(SMTPSettings.smtp_password))).scalar_one()
    await session.rollback()

    body = smtp_body(smtp_port=2525)
    del body["smtp_password"]
    kept = await client.put(url, json=body, headers=world.a.admin)
    assert kept.status_code == 200
    assert kept.json()["password_set"] is True
    after = (await session.execute(select(SMTPSettings.smtp_password))).scalar_one()
    await session.rollback()
    assert after == before

    cleared = await client.put(
        url,
        json=smtp_body(smtp_password=None, smtp_username=None, clear_password=True),
        headers=world.a.admin,
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["password_set"] is False
    assert cleared.json()["smtp_username"] is None


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"smtp_server": "not a host!"}, "invalid_smtp_server"),
        ({"smtp_server": ""}, "invalid_smtp_server"),
        ({"smtp_server": "-bad.example.com"}, "invalid_smtp_server"),
        ({"smtp_port": 0}, "invalid_smtp_port"),
        ({"smtp_port": 65536}, "invalid_smtp_port"),
        ({"from_email": "nobody"}, "invalid_from_email"),
        ({"from_email": "a@b@c"}, "invalid_from_email"),
        ({"ca_certificate": "-----BEGIN CERTIFICATE-----\nxx\n"}, "invalid_ca_certificate"),
        ({"use_tls": False, "tls_mode": "implicit"}, "tls_mode_conflict"),
        ({"smtp_password": None}, "password_required"),
        ({"smtp_username": None}, "username_required"),
        ({"smtp_password": ""}, "invalid_smtp_password"),
    ],
)
async def test_each_invalid_field_has_its_own_error(
    client: httpx.AsyncClient,
    session: AsyncSession,
    changes: dict[str, Any],
    code: str,
) -> None:
    world = await make_world(session)
    response = await client.put(
        f"{API}/orgs/{world.a.id}/smtp", json=smtp_body(**changes), headers=world.a.admin
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert (await session.execute(select(SMTPSettings))).first() is None


async def test_malformed_bodies_are_refused_cleanly(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    url = f"{API}/smtp/global"
    bad_type = await client.put(url, json=smtp_body(smtp_port="many"), headers=world.server_admin)
    assert bad_type.status_code == 422
    assert bad_type.json()["error"]["code"] == "validation_error"
    unknown = await client.put(url, json=smtp_body(password="x"), headers=world.server_admin)
    assert unknown.status_code == 422
    broken = await client.put(
        url,
        content=b"{not json",
        headers={**world.server_admin, "Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "malformed_json"


async def test_tls_options(
    client: httpx.AsyncClient, session: AsyncSession, certificate: Certificate
) -> None:
    world = await make_world(session)
    url = f"{API}/smtp/global"
    implicit = await client.put(url, json=smtp_body(smtp_port=465), headers=world.server_admin)
    assert implicit.json()["tls_mode"] == "auto"
    assert implicit.json()["effective_tls"] == "implicit"
    forced = await client.put(
        url, json=smtp_body(smtp_port=2465, tls_mode="implicit"), headers=world.server_admin
    )
    assert forced.json()["effective_tls"] == "implicit"
    plain = await client.put(url, json=smtp_body(use_tls=False), headers=world.server_admin)
    assert plain.json()["effective_tls"] == "none"
    trusted = await client.put(
        url, json=smtp_body(ca_certificate=certificate.pem), headers=world.server_admin
    )
    assert trusted.status_code == 200
    assert trusted.json()["ca_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    conflict = await client.put(
        url,
        json=smtp_body(ca_certificate=certificate.pem, verify_certificate=False),
        headers=world.server_admin,
    )
    assert conflict.status_code == 422
    assert conflict.json()["error"]["code"] == "ca_certificate_conflict"
    relay = await client.put(
        url, json=smtp_body(verify_certificate=False), headers=world.server_admin
    )
    assert relay.json()["verify_certificate"] is False
    assert relay.json()["ca_certificate"] is None


async def test_internal_sender_domains_are_accepted(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    response = await client.put(
        f"{API}/smtp/global",
        json=smtp_body(smtp_server="relay.corp.internal", from_email="Wiremesh@Corp.Internal"),
        headers=world.server_admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["smtp_server"] == "relay.corp.internal"
    assert response.json()["from_email"].lower() == "wiremesh@corp.internal"
