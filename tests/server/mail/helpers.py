"""Test data of the mail tests: orgs with people in every role, SMTP settings bodies."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from tests.server.mail.smtp_servers import HOST, Certificate, SmtpServer
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.mail.models import MailOutbox, MailStatus
from wiremesh.server.mail.transport import FakeTransport, SentMail
from wiremesh.server.orgs.models import Organization, OrgRole
from wiremesh.server.presence.models import ConnectionStatus
from wiremesh.server.workers.mail_outbox import MailOutboxWorker, OutboxOptions

API = "/api/v1"
PASSWORD = "s3cret-pw"


@dataclass
class Tenant:
    id: int
    name: str
    owner: dict[str, str]
    admin: dict[str, str]
    member: dict[str, str]
    owner_email: str
    admin_email: str
    member_email: str


@dataclass
class World:
    server_admin: dict[str, str]
    outsider: dict[str, str]
    outsider_email: str
    a: Tenant
    b: Tenant


async def _tenant(session: AsyncSession, name: str) -> Tenant:
    org = await make_org(session, name=name)
    people = {}
    for role in OrgRole:
        user = await make_user(session)
        await make_member(session, org, user, role)
        people[role] = user
    return Tenant(
        id=org.id,
        name=org.name,
        owner=auth(await make_token(session, people[OrgRole.OWNER])),
        admin=auth(await make_token(session, people[OrgRole.ADMIN])),
        member=auth(await make_token(session, people[OrgRole.MEMBER])),
        owner_email=people[OrgRole.OWNER].email,
        admin_email=people[OrgRole.ADMIN].email,
        member_email=people[OrgRole.MEMBER].email,
    )


async def make_world(session: AsyncSession) -> World:
    """Two orgs (a, b) with an owner, an admin and a member each, a server admin, an outsider."""
    admin = await make_user(session, server_admin=True)
    outsider = await make_user(session)
    world = World(
        server_admin=auth(await make_token(session, admin)),
        outsider=auth(await make_token(session, outsider)),
        outsider_email=outsider.email,
        a=await _tenant(session, f"alpha-{admin.id}"),
        b=await _tenant(session, f"bravo-{admin.id}"),
    )
    await session.commit()
    return world


def smtp_body(
    server: SmtpServer | None = None,
    certificate: Certificate | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A PUT body for ``server`` (trusting ``certificate``), or for a made-up host."""
    body: dict[str, Any] = {
        "smtp_server": HOST if server is not None else "smtp.example.com",
        "smtp_port": server.port if server is not None else 587,
        "smtp_username": "mailer",
        "smtp_password": PASSWORD,
        "from_email": "noreply@example.com",
        "use_tls": True,
        "tls_mode": "auto" if server is None or server.mode == "starttls" else "implicit",
        "ca_certificate": certificate.pem if certificate is not None else None,
    }
    body.update(changes)
    return body


async def outbox_rows(
    sessionmaker: async_sessionmaker[AsyncSession], **filters: Any
) -> list[MailOutbox]:
    async with sessionmaker() as session:
        statement = select(MailOutbox).filter_by(**filters).order_by(MailOutbox.id)
        return list((await session.execute(statement)).scalars().all())


# --- devices and their sessions, for the alert tests ---------------------------------------

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Site:
    def __init__(self, org: Organization, admins: list[str], user_id: int) -> None:
        self.org = org
        self.admins = admins
        self.user_id = user_id


async def make_site(session: AsyncSession) -> Site:
    org = await make_org(session)
    owner, admin, member = [await make_user(session) for _ in range(3)]
    inactive_admin = await make_user(session)
    inactive_admin.is_active = False
    await make_member(session, org, owner, OrgRole.OWNER)
    await make_member(session, org, admin, OrgRole.ADMIN)
    await make_member(session, org, member, OrgRole.MEMBER)
    await make_member(session, org, inactive_admin, OrgRole.ADMIN)
    return Site(org, sorted([owner.email, admin.email]), member.id)


async def make_device(
    session: AsyncSession, site: Site, peer_id: str, *, revoked: bool = False
) -> VirtualIPMapping:
    number = sum(map(ord, peer_id)) % 200 + 2
    device = VirtualIPMapping(
        org_id=site.org.id,
        user_id=site.user_id,
        peer_id=peer_id,
        virtual_ip=f"100.64.0.{number}",
        hostname=f"host-{peer_id}",
        credential_lookup=uuid.uuid4().hex[:12],
        credential_hash="0" * 64,
        revoked_at=T0 if revoked else None,
    )
    session.add(device)
    await session.flush()
    return device


async def session_row(
    session: AsyncSession,
    device: VirtualIPMapping,
    *,
    connected_at: datetime,
    ended_at: datetime | None = None,
    status: str = "connected",
) -> ConnectionStatus:
    row = ConnectionStatus(
        user_id=device.user_id,
        org_id=device.org_id,
        virtual_ip=device.virtual_ip,
        peer_id=device.peer_id,
        connection_id=uuid.uuid4(),
        status=status,
        connected_at=connected_at,
        disconnected_at=ended_at,
    )
    session.add(row)
    await session.flush()
    return row


async def deliver_now(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, kind: str
) -> tuple[list[SentMail], list[MailOutbox]]:
    """Send every unsent mail of ``kind`` now through a ``FakeTransport``: what was sent, and
    the rows after. The app's own worker may hold a mail for a moment, so claim until done."""
    transport = FakeTransport()
    worker = MailOutboxWorker(
        sessionmaker,
        settings,
        transport=transport,
        options=OutboxOptions(poll_interval=0.05, send_timeout=5),
    )
    for _ in range(100):
        async with sessionmaker() as session:
            await session.execute(
                update(MailOutbox)
                .where(MailOutbox.kind == kind, MailOutbox.status == MailStatus.QUEUED.value)
                .values(next_attempt_at=utcnow())
            )
            await session.commit()
        await worker.run_once()
        rows = await outbox_rows(sessionmaker, kind=kind)
        if all(row.status in (MailStatus.SENT.value, MailStatus.FAILED.value) for row in rows):
            return transport.sent, rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"the {kind} mails were not all sent")
