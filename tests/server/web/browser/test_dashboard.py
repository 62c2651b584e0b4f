"""What a person does in the dashboard, in a real browser against a real server process."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from tests.server.mail.smtp_servers import SmtpServer
from tests.server.web.browser.conftest import TIMEOUT_MS, Dashboard
from tests.server.web.dashboard import PASSWORD
from tests.server.web.mailbox import SMTP_PASSWORD, link_in, mail_to
from tests.support.waiting import eventually
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.orgs.models import Membership
from wiremesh.server.users.models import User

expect.set_options(timeout=TIMEOUT_MS)


async def signed_in_page(chromium: Browser, dashboard: Dashboard, email: str) -> Page:
    page = await chromium.new_page(base_url=dashboard.url)
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/sign-in"))
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name=re.compile("Sign out"))).to_be_visible()
    return page


async def test_a_device_goes_offline_live_and_is_revoked(
    chromium: Browser, dashboard: Dashboard
) -> None:
    deployment = dashboard.deployment
    enrolled = await deployment.enroll_raw("laptop")
    agent = await deployment.connect_live(enrolled)
    page = await signed_in_page(chromium, dashboard, dashboard.owner_email)
    await expect(page).to_have_url(re.compile(rf"/orgs/{dashboard.org_id}/devices$"))
    row = page.locator(f"#device-{enrolled['device']['id']}")
    await expect(row).to_have_attribute("data-state", "online")
    await expect(page.locator("#live-status")).to_contain_text("on")
    await page.evaluate("window.stillTheSamePage = true")

    await agent.close()
    await expect(row).to_have_attribute("data-state", "offline")
    assert await page.evaluate("window.stillTheSamePage") is True  # no reload happened

    # By keyboard: open the row's actions, then Revoke, and confirm.
    page.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_text("Manage").focus()
    await page.keyboard.press("Enter")
    await row.get_by_role("button", name="Revoke").focus()
    await page.keyboard.press("Enter")
    await expect(row).to_have_attribute("data-state", "revoked")
    async with deployment.sessionmaker() as session:
        device = await session.get(VirtualIPMapping, enrolled["device"]["id"])
        assert device is not None
        assert device.revoked_at is not None


async def test_smtp_settings_a_test_mail_and_an_invitation_accepted_from_the_mail(
    chromium: Browser, dashboard: Dashboard, smtp_server: SmtpServer
) -> None:
    page = await signed_in_page(chromium, dashboard, dashboard.owner_email)
    await page.goto(f"/orgs/{dashboard.org_id}/mail")
    await page.get_by_label("Server", exact=True).fill(smtp_server.host)
    await page.get_by_label("Port", exact=True).fill(str(smtp_server.port))
    await page.get_by_label("From", exact=True).fill("mesh@example.com")
    await page.get_by_label("User name", exact=True).fill("mailer")
    await page.get_by_label("Password", exact=True).fill(SMTP_PASSWORD)
    await page.get_by_label("TLS mode", exact=True).select_option("starttls")
    await page.get_by_label("Verify the server's certificate").uncheck()  # self-signed
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_label("Server", exact=True)).to_have_value(smtp_server.host)

    await page.get_by_label("To", exact=True).fill("ops@example.com")
    await page.get_by_role("button", name="Send a test mail").click()
    await expect(page.locator("#test-result")).to_contain_text("Test mail delivered")
    test_mail = await mail_to(smtp_server, "ops@example.com")
    assert test_mail["From"] == "mesh@example.com"

    await page.goto(f"/orgs/{dashboard.org_id}/invitations")
    await page.get_by_label("E-mail").fill("newcomer@example.com")
    await page.get_by_role("button", name="Send the invitation").click()
    await expect(page.get_by_role("cell", name="newcomer@example.com")).to_be_visible()

    link = link_in(await mail_to(smtp_server, "newcomer@example.com"), "/invitations/accept")
    invitee = await chromium.new_page(base_url=dashboard.url)  # a browser of their own
    invitee.set_default_timeout(TIMEOUT_MS)
    await invitee.goto(link)
    await invitee.get_by_label("Your name").fill("Newcomer")
    await invitee.get_by_label(re.compile("^Password")).fill(PASSWORD)
    await invitee.get_by_role("button", name="Create the account and join").click()
    await expect(invitee).to_have_url(re.compile(rf"/orgs/{dashboard.org_id}/devices$"))

    async def joined() -> bool:
        async with dashboard.deployment.sessionmaker() as session:
            user = (
                await session.execute(
                    User.__table__.select().where(User.email == "newcomer@example.com")
                )
            ).first()
            if user is None:
                return False
            role = await session.scalar(
                Membership.__table__.select()
                .with_only_columns(Membership.role)
                .where(Membership.user_id == user.id, Membership.org_id == dashboard.org_id)
            )
            return role == "member"

    await eventually(joined, 10, "the invitee is a member")
    # The link worked once.
    second = await invitee.goto(link)
    assert second is not None
    assert second.status == 404


async def test_refusals_in_the_browser(chromium: Browser, dashboard: Dashboard) -> None:
    deployment = dashboard.deployment
    enrolled = await deployment.enroll_raw("server-1")
    device_id = enrolled["device"]["id"]
    owner = await signed_in_page(chromium, dashboard, dashboard.owner_email)
    await owner.goto(f"/orgs/{dashboard.org_id}/devices")
    row = owner.locator(f"#device-{device_id}")
    await row.get_by_text("Manage").click()

    # A forged token, then no token at all: 403, and the device stays as it was.
    owner.on("dialog", lambda dialog: dialog.accept())
    revoke_form = row.locator("form[action$='/revoke']")
    await revoke_form.locator("input[name=csrf]").evaluate("input => input.value = 'forged'")
    async with owner.expect_response(lambda r: r.url.endswith("/revoke")) as forged:
        await revoke_form.get_by_role("button", name="Revoke").click()
    assert (await forged.value).status == 403
    await expect(owner.get_by_role("heading", name="Not allowed")).to_be_visible()
    await owner.go_back()
    await owner.reload()
    row = owner.locator(f"#device-{device_id}")
    await row.get_by_text("Manage").click()
    revoke_form = row.locator("form[action$='/revoke']")
    await revoke_form.locator("input[name=csrf]").evaluate("input => input.remove()")
    async with owner.expect_response(lambda r: r.url.endswith("/revoke")) as missing:
        await revoke_form.get_by_role("button", name="Revoke").click()
    assert (await missing.value).status == 403
    async with deployment.sessionmaker() as session:
        device = await session.get(VirtualIPMapping, device_id)
        assert device is not None
        assert device.revoked_at is None

    # Another org's device, by its URL: not found, as if it did not exist.
    other = await owner.goto(f"/orgs/{dashboard.other.org.id}/devices/{dashboard.other.device_id}")
    assert other is not None
    assert other.status == 404
    await expect(owner.get_by_text("elsewhere-laptop")).to_have_count(0)

    # A member: the server's page and the org's admin pages are refused.
    member = await signed_in_page(chromium, dashboard, dashboard.member_email)
    for path in ("/admin", f"/orgs/{dashboard.org_id}/invitations"):
        response = await member.goto(path)
        assert response is not None
        assert response.status == 403, path
        await expect(member.get_by_role("heading", name="Not allowed")).to_be_visible()
