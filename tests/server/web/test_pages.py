"""Every page renders for the people it is for, and refuses everyone else as the API does."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.server.web.dashboard import csrf_of, form_token, sign_in
from tests.server.web.fixtures import Tenant, make_tenant
from tests.support.ports import free_port
from wiremesh.server.alerts.service import get_alert_settings
from wiremesh.server.config import Settings
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.mail import service as mail_service
from wiremesh.server.mail.models import MailOutbox, MailStatus
from wiremesh.server.mail.outbox import enqueue
from wiremesh.server.mail.render import RenderedMail
from wiremesh.server.mail.service import SMTPSettingsInput
from wiremesh.server.tenancy import OrgScope


@pytest.fixture
async def tenants(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[Tenant, Tenant]:
    async with sessionmaker() as session:
        first = await make_tenant(session, "acme", "100.64.1.0/24")
        second = await make_tenant(session, "globex", "100.64.2.0/24")
        await session.commit()
        return first, second


async def device_state(
    sessionmaker: async_sessionmaker[AsyncSession], device_id: int
) -> tuple[str, bool] | None:
    async with sessionmaker() as session:
        device = await session.get(VirtualIPMapping, device_id)
        return None if device is None else (device.hostname, device.revoked_at is not None)


async def test_an_owner_sees_every_page_of_their_org(
    browser: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    acme, _ = tenants
    await sign_in(browser, acme.owner.email)
    base = f"/orgs/{acme.org.id}"
    for path in (
        "/orgs",
        f"{base}/devices",
        f"{base}/devices/{acme.device_id}",
        f"{base}/devices/{acme.device_id}?period=7d",
        f"{base}/members",
        f"{base}/invitations",
        f"{base}/setup-keys",
        f"{base}/stale",
        f"{base}/mail",
        f"{base}/alerts",
        "/account/tokens",
    ):
        page = await browser.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "<script>" not in page.text  # scripts come from /static only
    devices = await browser.get(f"{base}/devices")
    assert "acme-laptop" in devices.text
    assert "globex" not in devices.text.split("<main", 1)[1]
    assert (await browser.get("/")).headers["location"] == f"{base}/devices"


async def test_a_form_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(
    browser: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    acme, _ = tenants
    await sign_in(browser, acme.owner.email)
    action = f"/orgs/{acme.org.id}/devices/{acme.device_id}/revoke"
    missing = await browser.post(action, data={})
    wrong = await browser.post(action, data={"csrf": "0" * 64})
    rename = await browser.post(
        f"/orgs/{acme.org.id}/devices/{acme.device_id}/rename",
        data={"csrf": "forged", "hostname": "pwned"},
    )
    assert missing.status_code == wrong.status_code == rename.status_code == 403
    assert "did not come from this site" in wrong.text
    assert await device_state(sessionmaker, acme.device_id) == ("acme-laptop", False)
    # Another browser's token is no good either: it is tied to the session.
    async with httpx.AsyncClient(
        transport=browser._transport, base_url="http://wiremesh.test"
    ) as other:
        await sign_in(other, acme.member.email)
        foreign = csrf_of((await other.get("/orgs")).text)
    stolen = await browser.post(action, data={"csrf": foreign})
    assert stolen.status_code == 403
    assert await device_state(sessionmaker, acme.device_id) == ("acme-laptop", False)
    # With this session's token it works.
    token = await form_token(browser, f"/orgs/{acme.org.id}/devices")
    done = await browser.post(action, data={"csrf": token})
    assert done.status_code == 303
    assert await device_state(sessionmaker, acme.device_id) == ("acme-laptop", True)


async def test_a_member_is_refused_admin_pages_and_actions(
    browser: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    acme, _ = tenants
    await sign_in(browser, acme.member.email)
    base = f"/orgs/{acme.org.id}"
    assert (await browser.get(f"{base}/devices")).status_code == 200
    for path in (
        "/admin",
        "/admin/mail",
        f"{base}/invitations",
        f"{base}/setup-keys",
        f"{base}/mail",
    ):
        page = await browser.get(path)
        assert page.status_code == 403, path
        assert "Not allowed" in page.text
    token = await form_token(browser, f"{base}/devices")
    revoke = await browser.post(f"{base}/devices/{acme.device_id}/revoke", data={"csrf": token})
    assert revoke.status_code == 403
    assert await device_state(sessionmaker, acme.device_id) == ("acme-laptop", False)
    # The member's own list shows no admin buttons.
    assert "/revoke" not in (await browser.get(f"{base}/devices")).text


async def test_another_orgs_device_is_not_found_whichever_url(
    browser: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    acme, globex = tenants
    await sign_in(browser, acme.owner.email)
    for path in (
        f"/orgs/{globex.org.id}/devices/{globex.device_id}",
        f"/orgs/{globex.org.id}/devices",
        f"/orgs/{globex.org.id}/devices/stream",
        f"/orgs/{acme.org.id}/devices/{globex.device_id}",
        "/orgs/999999/devices",
    ):
        page = await browser.get(path)
        assert page.status_code == 404, path
        assert "globex-laptop" not in page.text
    token = await form_token(browser, f"/orgs/{acme.org.id}/devices")
    for action in (
        f"/orgs/{acme.org.id}/devices/{globex.device_id}/revoke",
        f"/orgs/{globex.org.id}/devices/{globex.device_id}/revoke",
        f"/orgs/{acme.org.id}/devices/{globex.device_id}/delete",
    ):
        assert (await browser.post(action, data={"csrf": token})).status_code == 404
    assert await device_state(sessionmaker, globex.device_id) == ("globex-laptop", False)


async def test_rename_and_delete_through_the_forms(
    browser: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    acme, _ = tenants
    await sign_in(browser, acme.owner.email)
    base = f"/orgs/{acme.org.id}/devices"
    token = await form_token(browser, base)
    renamed = await browser.post(
        f"{base}/{acme.device_id}/rename", data={"csrf": token, "hostname": "build-box"}
    )
    assert renamed.status_code == 303
    assert await device_state(sessionmaker, acme.device_id) == ("build-box", False)
    bad = await browser.post(
        f"{base}/{acme.device_id}/rename", data={"csrf": token, "hostname": "bad host!"}
    )
    assert bad.status_code == 422
    assert await device_state(sessionmaker, acme.device_id) == ("build-box", False)
    deleted = await browser.post(f"{base}/{acme.device_id}/delete", data={"csrf": token})
    assert deleted.status_code == 303
    assert await device_state(sessionmaker, acme.device_id) is None


async def test_a_server_admin_sees_the_server_pages(
    browser: httpx.AsyncClient, session: AsyncSession, tenants: tuple[Tenant, Tenant]
) -> None:
    from tests.factories import make_user
    from tests.server.web.dashboard import PASSWORD

    await make_user(session, email="root@example.com", server_admin=True, password=PASSWORD)
    await session.commit()
    await sign_in(browser, "root@example.com")
    admin = await browser.get("/admin")
    assert admin.status_code == 200
    assert "acme" in admin.text
    assert "globex" in admin.text
    assert (await browser.get("/admin/mail")).status_code == 200
    # A server administrator passes the org rule everywhere, as in the API.
    assert (await browser.get(f"/orgs/{tenants[1].org.id}/invitations")).status_code == 200


async def test_alert_settings_are_saved_and_bad_values_refused(
    browser: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    acme, _ = tenants
    await sign_in(browser, acme.owner.email)
    path = f"/orgs/{acme.org.id}/alerts"
    token = await form_token(browser, path)
    saved = await browser.post(
        path,
        data={
            "csrf": token,
            "enabled": "true",
            "offline_threshold_seconds": "300",
            "debounce_seconds": "600",
        },
    )
    assert saved.status_code == 303
    bad = await browser.post(
        path,
        data={"csrf": token, "offline_threshold_seconds": "999999999", "debounce_seconds": "1"},
    )
    assert bad.status_code == 422
    async with sessionmaker() as session:
        view = await get_alert_settings(session, acme.org.id)
    assert (view.enabled, view.offline_threshold_seconds, view.debounce_seconds) == (True, 300, 600)


async def test_the_smtp_form_saves_a_from_name_and_an_empty_one_clears_it(
    browser: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    acme, _ = tenants
    await sign_in(browser, acme.owner.email)
    path = f"/orgs/{acme.org.id}/mail"
    form = {
        "smtp_server": "smtp.example.com",
        "smtp_port": "587",
        "from_email": "ops@example.com",
        "tls_mode": "starttls",
        "use_tls": "true",
        "verify_certificate": "true",
        "is_active": "true",
    }
    token = await form_token(browser, path)
    named = await browser.post(
        f"{path}/smtp", data={"csrf": token, **form, "from_name": "Acme Ops"}
    )
    assert named.status_code == 303, named.text
    async with sessionmaker() as session:
        row = await mail_service.get_settings(session, OrgScope(acme.org.id))
        assert (row.from_email, row.from_name) == ("ops@example.com", "Acme Ops")
    page = await browser.get(path)
    assert 'value="Acme Ops"' in page.text
    cleared = await browser.post(f"{path}/smtp", data={"csrf": token, **form, "from_name": ""})
    assert cleared.status_code == 303
    # Line breaks fold into spaces; a control character is refused and changes nothing.
    bad = await browser.post(f"{path}/smtp", data={"csrf": token, **form, "from_name": "A\x07"})
    assert bad.status_code == 422
    assert "control characters" in bad.text
    async with sessionmaker() as session:
        row = await mail_service.get_settings(session, OrgScope(acme.org.id))
        assert row.from_name is None


async def test_a_malformed_form_and_an_unknown_page_are_pages_and_the_api_keeps_json(
    browser: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    acme, _ = tenants
    await sign_in(browser, acme.owner.email)
    token = await form_token(browser, f"/orgs/{acme.org.id}/members")
    bad_role = await browser.post(
        f"/orgs/{acme.org.id}/members/{acme.member.id}/role", data={"csrf": token, "role": "god"}
    )
    assert bad_role.status_code == 422
    assert "text/html" in bad_role.headers["content-type"]
    assert "not valid" in bad_role.text
    missing = await browser.get("/no/such/page")
    assert missing.status_code == 404
    assert "There is no such page." in missing.text
    api = await browser.get("/api/v1/no/such/endpoint")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"


async def test_a_failed_mail_is_retried_from_the_outbox_of_its_own_org_only(
    browser: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    acme, globex = tenants
    async with sessionmaker() as session:
        # Nothing listens there: a send the worker tries after the retry fails for a while
        # and the mail stays queued, whenever the worker gets to it.
        await mail_service.put_settings(
            session,
            settings,
            OrgScope(acme.org.id),
            SMTPSettingsInput(
                smtp_server="127.0.0.1", smtp_port=free_port(), from_email="a@example.com"
            ),
        )
        ids = []
        for tenant in (acme, globex):
            mail = await enqueue(
                session,
                org_id=tenant.org.id,
                kind="test",
                to="x@example.com",
                rendered=RenderedMail(subject="s", text="t", html="h"),
            )
            mail.status = MailStatus.FAILED.value
            ids.append(mail.id)
        await session.commit()
    await sign_in(browser, acme.owner.email)
    page = f"/orgs/{acme.org.id}/mail"
    listing = await browser.get(page)
    assert f"{page}/{ids[0]}/retry" in listing.text
    token = csrf_of(listing.text)
    other = await browser.post(f"{page}/{ids[1]}/retry", data={"csrf": token})
    assert other.status_code == 404
    own = await browser.post(f"{page}/{ids[0]}/retry", data={"csrf": token})
    assert own.status_code == 303
    async with sessionmaker() as session:
        rows = [await session.get(MailOutbox, mail_id) for mail_id in ids]
    assert [row.status if row else None for row in rows] == [
        MailStatus.QUEUED.value,
        MailStatus.FAILED.value,
    ]
