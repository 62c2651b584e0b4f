"""Invitations: mailed by org admins, accepted once, by the invited address, before expiry."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_token, make_user
from tests.server.mail.helpers import API, deliver_now, make_world, outbox_rows, smtp_body
from tests.support.ports import free_port
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.orgs.models import Membership, OrgInvitation

TOKEN = re.compile(r"wminv_[0-9a-f]{12}_[A-Za-z0-9_-]+")


async def configure_global_smtp(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    # Nothing listens there: an app worker that tries the mail fails at once, harmlessly.
    body = smtp_body(smtp_server="127.0.0.1", smtp_port=free_port())
    response = await client.put(f"{API}/smtp/global", json=body, headers=headers)
    assert response.status_code == 200, response.text


async def invite(
    client: httpx.AsyncClient, org_id: int, headers: dict[str, str], **body: object
) -> httpx.Response:
    return await client.post(f"{API}/orgs/{org_id}/invitations", json=body, headers=headers)


async def test_an_invitation_is_mailed_and_accepted_once(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    world = await make_world(session)
    await configure_global_smtp(client, world.server_admin)
    invitee = await make_user(session, email="new.person@example.org")
    invitee_auth = auth(await make_token(session, invitee))
    invitee_id = invitee.id
    await session.commit()

    created = await invite(
        client, world.a.id, world.a.admin, email="New.Person@example.org", role="admin"
    )
    assert created.status_code == 201, created.text
    data = created.json()
    assert (data["email"], data["role"], data["org_id"]) == (
        "new.person@example.org",
        "admin",
        world.a.id,
    )
    assert "token" not in data
    [sent], [row] = await deliver_now(sessionmaker, settings, kind="invitation")
    assert row.id == data["mail_id"]
    mail = sent.mail
    assert mail.to == "new.person@example.org"
    assert row.org_id == world.a.id
    assert world.a.name in mail.subject
    token = TOKEN.search(mail.text)
    assert token is not None
    assert mail.html is not None
    assert token.group() in mail.html
    assert f"/invitations/accept?token={token.group()}" in mail.text

    stored = (await session.execute(select(OrgInvitation))).scalar_one()
    assert token.group() not in (stored.token_hash, stored.lookup)
    assert stored.expires_at - stored.created_at == timedelta(days=7)
    await session.rollback()

    accepted = await client.post(
        f"{API}/invitations/accept", json={"token": token.group()}, headers=invitee_auth
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["org_id"] == world.a.id
    assert accepted.json()["role"] == "admin"
    role = (
        await session.execute(
            select(Membership.role).where(
                Membership.org_id == world.a.id, Membership.user_id == invitee_id
            )
        )
    ).scalar_one()
    assert role == "admin"
    await session.rollback()

    again = await client.post(
        f"{API}/invitations/accept", json={"token": token.group()}, headers=invitee_auth
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] in {"invitation_used", "already_member"}


async def test_only_the_invited_address_may_accept(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    world = await make_world(session)
    await configure_global_smtp(client, world.server_admin)
    await invite(client, world.a.id, world.a.owner, email="someone@example.org")
    [sent], _rows = await deliver_now(sessionmaker, settings, kind="invitation")
    token = TOKEN.search(sent.mail.text)
    assert token is not None
    other = await client.post(
        f"{API}/invitations/accept", json={"token": token.group()}, headers=world.outsider
    )
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "invitation_email_mismatch"
    forged = await client.post(
        f"{API}/invitations/accept",
        json={"token": token.group()[:-3] + "abc"},
        headers=world.outsider,
    )
    assert forged.status_code == 404
    assert forged.json()["error"]["code"] == "invalid_invitation"
    junk = await client.post(
        f"{API}/invitations/accept", json={"token": "hello"}, headers=world.outsider
    )
    assert junk.status_code == 404
    anonymous = await client.post(f"{API}/invitations/accept", json={"token": token.group()})
    assert anonymous.status_code == 401


async def test_expired_and_revoked_invitations_are_refused(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    world = await make_world(session)
    await configure_global_smtp(client, world.server_admin)
    await invite(client, world.a.id, world.a.admin, email=world.outsider_email)
    [a_sent], _rows = await deliver_now(sessionmaker, settings, kind="invitation")
    first = await invite(client, world.b.id, world.b.admin, email=world.outsider_email)
    [b_old_sent], _rows = await deliver_now(sessionmaker, settings, kind="invitation")
    second = await invite(client, world.b.id, world.b.admin, email=world.outsider_email)
    [b_new_sent], _rows = await deliver_now(sessionmaker, settings, kind="invitation")
    tokens = [TOKEN.search(sent.mail.text) for sent in (a_sent, b_old_sent, b_new_sent)]
    assert all(tokens)
    a_token, b_old, b_new = (t.group() for t in tokens if t is not None)

    async with sessionmaker() as db:
        await db.execute(
            update(OrgInvitation)
            .where(OrgInvitation.org_id == world.a.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await db.commit()
    expired = await client.post(
        f"{API}/invitations/accept", json={"token": a_token}, headers=world.outsider
    )
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "invitation_expired"

    # a newer invitation of the same address revokes the older one
    old = await client.post(
        f"{API}/invitations/accept", json={"token": b_old}, headers=world.outsider
    )
    assert old.status_code == 410
    assert old.json()["error"]["code"] == "invitation_revoked"
    pending = await client.get(f"{API}/orgs/{world.b.id}/invitations", headers=world.b.admin)
    assert [i["id"] for i in pending.json()] == [second.json()["id"]]
    assert first.json()["id"] != second.json()["id"]

    revoked = await client.delete(
        f"{API}/orgs/{world.b.id}/invitations/{second.json()['id']}", headers=world.b.admin
    )
    assert revoked.status_code == 204
    refused = await client.post(
        f"{API}/invitations/accept", json={"token": b_new}, headers=world.outsider
    )
    assert refused.json()["error"]["code"] == "invitation_revoked"


async def test_who_may_invite_whom(client: httpx.AsyncClient, session: AsyncSession) -> None:
    world = await make_world(session)
    await configure_global_smtp(client, world.server_admin)
    member = await invite(client, world.a.id, world.a.member, email="x@example.org")
    assert member.status_code == 403
    stranger = await invite(client, world.a.id, world.b.owner, email="x@example.org")
    assert stranger.status_code == 404
    owner_by_admin = await invite(
        client, world.a.id, world.a.admin, email="x@example.org", role="owner"
    )
    assert owner_by_admin.status_code == 403
    owner_by_owner = await invite(
        client, world.a.id, world.a.owner, email="x@example.org", role="owner"
    )
    assert owner_by_owner.status_code == 201
    existing = await invite(client, world.a.id, world.a.owner, email=world.a.member_email)
    assert existing.status_code == 409
    assert existing.json()["error"]["code"] == "already_member"
    bad = await invite(client, world.a.id, world.a.owner, email="nope")
    assert bad.status_code == 422
    bad_role = await invite(client, world.a.id, world.a.owner, email="y@example.org", role="king")
    assert bad_role.status_code == 422


async def test_inviting_needs_a_way_to_send_mail(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    world = await make_world(session)
    refused = await invite(client, world.a.id, world.a.admin, email="x@example.org")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "smtp_not_configured"
    assert (await session.execute(select(OrgInvitation))).first() is None


async def test_the_token_is_stored_nowhere_and_logged_nowhere(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The queued mail holds a placeholder; the token exists only in the message sent."""
    caplog.set_level(logging.DEBUG)
    world = await make_world(session)
    await configure_global_smtp(client, world.server_admin)
    created = await invite(client, world.a.id, world.a.admin, email=world.outsider_email)
    assert created.status_code == 201, created.text
    [queued] = await outbox_rows(sessionmaker, kind="invitation")
    assert TOKEN.search(queued.text) is None
    assert queued.html is not None
    assert TOKEN.search(queued.html) is None

    [sent], [row] = await deliver_now(sessionmaker, settings, kind="invitation")
    token = TOKEN.search(sent.mail.text)
    assert token is not None
    assert row.status == "sent"
    for stored in (row.text, row.html or "", row.subject, row.last_error or ""):
        assert token.group() not in stored
        assert TOKEN.search(stored) is None
    listed = await client.get(f"{API}/orgs/{world.a.id}/mail", headers=world.a.admin)
    assert TOKEN.search(listed.text) is None
    invitation = (await session.execute(select(OrgInvitation))).scalar_one()
    assert token.group() not in (invitation.lookup, invitation.token_hash)
    await session.rollback()
    assert token.group() not in caplog.text

    accepted = await client.post(
        f"{API}/invitations/accept", json={"token": token.group()}, headers=world.outsider
    )
    assert accepted.status_code == 200, accepted.text
    assert token.group() not in caplog.text


async def test_the_mail_of_a_revoked_invitation_is_not_sent(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    world = await make_world(session)
    await configure_global_smtp(client, world.server_admin)
    created = await invite(client, world.a.id, world.a.admin, email=world.outsider_email)
    revoked = await client.delete(
        f"{API}/orgs/{world.a.id}/invitations/{created.json()['id']}", headers=world.a.admin
    )
    assert revoked.status_code == 204
    sent, [row] = await deliver_now(sessionmaker, settings, kind="invitation")
    assert sent == []
    assert (row.status, row.last_outcome) == ("failed", "cancelled")
