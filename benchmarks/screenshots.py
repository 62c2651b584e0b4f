"""Screenshots of the dashboard's main pages, for the README: ``scripts/screenshots``.

Seeds a fresh SQLite database (an org, its people, devices with a day of connection history),
starts a real ``wiremesh server``, keeps a few devices online with real agent sessions, and
photographs the pages in Debian's headless Chromium with the same Playwright setup as the
browser tests. Writes ``docs/screenshots/*.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Browser, Page
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.chromium import chromium_path, launch_chromium
from tests.support.ports import free_port
from tests.support.processes import ProcessGroup, ServerProcess, clean_environ
from websockets.asyncio.client import ClientConnection, connect

from wiremesh.protocol import PROTOCOL_VERSION
from wiremesh.server.auth.passwords import hash_password
from wiremesh.server.config import Settings
from wiremesh.server.db import migrate
from wiremesh.server.db.session import create_engine, create_sessionmaker
from wiremesh.server.devices import service as devices_service
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.mail import service as mail_service
from wiremesh.server.mail.service import SMTPSettingsInput
from wiremesh.server.orgs import invitations
from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus
from wiremesh.server.tenancy import OrgScope
from wiremesh.server.users.models import User

PASSWORD = "screenshots only"
ADMIN = "ada@example.com"
HOSTS = ["build-server", "ada-laptop", "db-primary", "db-replica", "office-nas", "ci-runner"]
ONLINE = 4  # the first hosts keep a live session while the pictures are taken
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


async def seed(settings: Settings) -> tuple[int, list[tuple[int, str]]]:
    """The org, its people, devices and their history; the org id and (device id, credential)."""
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    now = datetime.now(UTC)
    async with sessionmaker() as session:
        org = Organization(name="acme", network_cidr="100.64.0.0/24")
        session.add(org)
        ada = User(email=ADMIN, name="Ada", is_server_admin=True)
        ada.password_hash = hash_password(PASSWORD)
        bob = User(email="bob@example.com", name="Bob")
        session.add_all([ada, bob])
        await session.flush()
        session.add(Membership(org_id=org.id, user_id=ada.id, role=OrgRole.OWNER.value))
        session.add(Membership(org_id=org.id, user_id=bob.id, role=OrgRole.MEMBER.value))
        await session.flush()
        _key, setup_key = await devices_service.create_setup_key(
            session,
            org.id,
            owner_user_id=ada.id,
            name="office",
            reusable=True,
            usage_limit=None,
            expires_in=None,
        )
        devices: list[tuple[int, str]] = []
        for index, host in enumerate(HOSTS):
            device, _org, credential = await devices_service.enroll(session, setup_key, host, None)
            device.created_at = now - timedelta(days=3)
            device.last_seen_at = now - timedelta(hours=30 + index)
            devices.append((device.id, credential))
            history(session, device, now, index)
        await mail_service.put_settings(
            session,
            settings,
            OrgScope(org.id),
            SMTPSettingsInput(
                smtp_server="127.0.0.1",
                smtp_port=free_port(),  # nothing listens: the outbox shows a retry
                from_email="mesh@acme.example.com",
                smtp_username="mesh",
                smtp_password="not-a-real-password",
            ),
        )
        await invitations.create_invitation(
            session,
            settings,
            org.id,
            email="carol@example.com",
            role=OrgRole.ADMIN,
            caller_role=OrgRole.OWNER,
            invited_by_user_id=ada.id,
        )
        await session.commit()
        org_id = org.id
    await engine.dispose()
    return org_id, devices


def history(session: AsyncSession, device: VirtualIPMapping, now: datetime, index: int) -> None:
    """A day of sessions: long ones, a heartbeat timeout, a gap overnight."""
    pattern = [(-26, -19, "disconnected"), (-18.5, -9, "timeout"), (-8, -2.5, "disconnected")]
    for start, end, status in pattern[: 3 - index % 2]:
        session.add(
            ConnectionStatus(
                user_id=device.user_id,
                org_id=device.org_id,
                virtual_ip=device.virtual_ip,
                peer_id=device.peer_id,
                connection_id=uuid.uuid4(),
                public_ip=f"203.0.113.{10 + index}",
                public_port=51820,
                status=ConnectionState(status).value,
                connected_at=now + timedelta(hours=start + index * 0.3),
                disconnected_at=now + timedelta(hours=end),
                end_reason="heartbeat_timeout" if status == "timeout" else "client_closed",
            )
        )


@contextlib.asynccontextmanager
async def keep_online(url: str, credential: str) -> AsyncIterator[ClientConnection]:
    """A real agent session that answers every ping."""
    ws = await connect(url)
    hello = {
        "type": "auth",
        "version": PROTOCOL_VERSION,
        "credential": credential,
        "listen_port": 51820,
        "agent_version": "screenshots",
    }
    await ws.send(json.dumps(hello))

    async def answer() -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                message = json.loads(frame)
                if message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "seq": message["seq"]}))

    task = asyncio.create_task(answer())
    try:
        yield ws
    finally:
        task.cancel()
        await ws.close()


async def shoot(page: Page, path: str, name: str) -> None:
    await page.goto(path)
    await page.wait_for_load_state("networkidle")
    await page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)
    print(f"docs/screenshots/{name}.png  {path}")


async def photograph(browser: Browser, base_url: str, org_id: int, device_id: int) -> None:
    wide = await browser.new_page(base_url=base_url, viewport={"width": 1280, "height": 760})
    await shoot(wide, "/sign-in", "sign-in")
    await wide.get_by_label("E-mail").fill(ADMIN)
    await wide.get_by_label("Password").fill(PASSWORD)
    await wide.get_by_role("button", name="Sign in").click()
    await wide.wait_for_url(f"**/orgs/{org_id}/devices")
    cookies = await wide.context.cookies()
    await shoot(wide, f"/orgs/{org_id}/devices", "devices")
    await shoot(wide, f"/orgs/{org_id}/devices/{device_id}?period=24h", "device-history")
    await shoot(wide, f"/orgs/{org_id}/invitations", "invitations")
    await shoot(wide, f"/orgs/{org_id}/mail", "mail")
    await shoot(wide, "/admin", "server-admin")
    dark_context = await browser.new_context(
        base_url=base_url, viewport={"width": 1280, "height": 760}, color_scheme="dark"
    )
    await dark_context.add_cookies(cookies)
    await shoot(await dark_context.new_page(), f"/orgs/{org_id}/devices", "devices-dark")
    phone_context = await browser.new_context(
        base_url=base_url, viewport={"width": 390, "height": 844}, device_scale_factor=2
    )
    await phone_context.add_cookies(cookies)
    await shoot(await phone_context.new_page(), f"/orgs/{org_id}/devices", "devices-phone")


async def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    executable = chromium_path()
    if executable is None:
        raise SystemExit("Chromium is not installed: apt-get install -y chromium")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wiremesh-screens-") as temp:
        directory = Path(temp)
        settings = Settings(data_dir=directory, smtp_allow_private_hosts=True)
        await asyncio.to_thread(migrate.upgrade, settings)
        org_id, devices = await seed(settings)
        group = ProcessGroup(directory)
        env = {
            **clean_environ(),
            "WIREMESH_DATA_DIR": str(directory),
            "WIREMESH_SMTP_ALLOW_PRIVATE_HOSTS": "true",
        }
        server = ServerProcess(group, env, free_port())
        try:
            await server.start()
            async with contextlib.AsyncExitStack() as online:
                for _device_id, credential in devices[:ONLINE]:
                    await online.enter_async_context(keep_online(server.ws_url, credential))
                await asyncio.sleep(1.0)  # the first heartbeats, so nobody shows as at risk
                async with launch_chromium(executable) as browser:
                    await photograph(browser, server.url, org_id, devices[0][0])
        finally:
            group.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
