"""Offline alerts: opt-in, threshold, debounce, recovery; what the org's admins receive."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.server.mail.helpers import (
    API,
    T0,
    Site,
    make_device,
    make_site,
    make_world,
    session_row,
)
from wiremesh.server.alerts import service as alerts
from wiremesh.server.alerts.service import (
    check_offline_devices,
    on_device_offline,
    on_device_online,
)
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.mail.models import MailOutbox


async def mails(session: AsyncSession) -> list[MailOutbox]:
    return list((await session.execute(select(MailOutbox).order_by(MailOutbox.id))).scalars())


async def offline(
    session: AsyncSession, site: Site, device: VirtualIPMapping, at: datetime
) -> bool:
    return await on_device_offline(
        session, site.org.id, device.peer_id, device.hostname, device.virtual_ip, "timeout", at
    )


async def online(session: AsyncSession, site: Site, device: VirtualIPMapping, at: datetime) -> bool:
    return await on_device_online(
        session, site.org.id, device.peer_id, device.hostname, device.virtual_ip, at
    )


async def test_nothing_is_sent_unless_the_org_opted_in(session: AsyncSession) -> None:
    site = await make_site(session)
    device = await make_device(session, site, "p1")
    assert not await offline(session, site, device, T0)
    assert not await online(session, site, device, T0 + timedelta(minutes=1))
    await alerts.put_alert_settings(session, site.org.id, enabled=False, now=T0)
    assert not await offline(session, site, device, T0 + timedelta(minutes=2))
    assert await mails(session) == []


async def test_offline_alert_to_the_admins_then_one_recovery_mail(session: AsyncSession) -> None:
    site = await make_site(session)
    device = await make_device(session, site, "p1")
    await alerts.put_alert_settings(session, site.org.id, enabled=True, now=T0)

    assert await offline(session, site, device, T0 + timedelta(minutes=1))
    sent = await mails(session)
    assert sorted(m.to for m in sent) == site.admins
    assert {m.kind for m in sent} == {"device_offline"}
    assert all(m.org_id == site.org.id for m in sent)
    assert "host-p1" in sent[0].subject
    assert device.virtual_ip in sent[0].subject
    assert "timed out" in sent[0].text
    assert sent[0].html
    assert "host-p1" in sent[0].html

    assert await online(session, site, device, T0 + timedelta(minutes=31))
    recovery = (await mails(session))[2:]
    assert sorted(m.to for m in recovery) == site.admins
    assert {m.kind for m in recovery} == {"device_online"}
    assert "back online" in recovery[0].subject
    assert "30 min" in recovery[0].text
    assert not await online(session, site, device, T0 + timedelta(minutes=32))
    assert len(await mails(session)) == 4


async def test_a_flapping_device_alerts_once_per_window(session: AsyncSession) -> None:
    site = await make_site(session)
    device = await make_device(session, site, "p1")
    await alerts.put_alert_settings(
        session, site.org.id, enabled=True, debounce_seconds=3600, now=T0
    )
    minute = timedelta(minutes=1)
    results = []
    for n in range(5):
        results.append(await offline(session, site, device, T0 + (2 * n + 1) * minute))
        results.append(await online(session, site, device, T0 + (2 * n + 2) * minute))
    assert results == [True, True] + [False] * 8
    kinds = [m.kind for m in await mails(session)]
    assert kinds.count("device_offline") == 2
    assert kinds.count("device_online") == 2

    # Once the window has passed, a new drop alerts again.
    assert await offline(session, site, device, T0 + timedelta(hours=2))


async def test_a_debounced_device_that_stays_offline_is_reported_after_the_window(
    session: AsyncSession,
) -> None:
    site = await make_site(session)
    device = await make_device(session, site, "p1")
    await alerts.put_alert_settings(
        session, site.org.id, enabled=True, debounce_seconds=600, now=T0
    )
    await session_row(
        session, device, connected_at=T0, ended_at=T0 + timedelta(minutes=1), status="timeout"
    )
    assert await offline(session, site, device, T0 + timedelta(minutes=1))
    await session_row(
        session,
        device,
        connected_at=T0 + timedelta(minutes=2),
        ended_at=T0 + timedelta(minutes=3),
        status="disconnected",
    )
    assert await online(session, site, device, T0 + timedelta(minutes=2))
    assert not await offline(session, site, device, T0 + timedelta(minutes=3))
    assert await check_offline_devices(session, T0 + timedelta(minutes=5)) == 0
    assert await check_offline_devices(session, T0 + timedelta(minutes=12)) == 1
    assert await check_offline_devices(session, T0 + timedelta(minutes=30)) == 0
    assert [m.kind for m in await mails(session)].count("device_offline") == 4


async def test_threshold_alerts_only_devices_offline_long_enough(session: AsyncSession) -> None:
    site = await make_site(session)
    await alerts.put_alert_settings(
        session, site.org.id, enabled=True, offline_threshold_seconds=300, now=T0
    )
    gone = await make_device(session, site, "gone")
    short = await make_device(session, site, "short")
    alive = await make_device(session, site, "alive")
    revoked = await make_device(session, site, "revoked", revoked=True)
    old = await make_device(session, site, "old")
    start = T0 + timedelta(minutes=1)
    await session_row(session, gone, connected_at=start, ended_at=start, status="timeout")
    assert not await offline(session, site, gone, start)  # the threshold decides, not the drop
    await session_row(
        session,
        short,
        connected_at=start,
        ended_at=start + timedelta(minutes=4),
        status="disconnected",
    )
    await session_row(session, alive, connected_at=start, ended_at=start, status="disconnected")
    await session_row(session, alive, connected_at=start + timedelta(seconds=5))
    await session_row(session, revoked, connected_at=start, ended_at=start, status="timeout")
    await session_row(
        session,
        old,
        connected_at=T0 - timedelta(days=2),
        ended_at=T0 - timedelta(days=1),
        status="timeout",
    )
    assert await mails(session) == []

    assert await check_offline_devices(session, start + timedelta(minutes=4)) == 0
    assert await check_offline_devices(session, start + timedelta(minutes=6)) == 1
    alerted = await mails(session)
    assert {m.subject.split("] ")[1].split(" ")[0] for m in alerted} == {"host-gone"}
    assert await check_offline_devices(session, start + timedelta(minutes=7)) == 0
    assert await check_offline_devices(session, start + timedelta(minutes=10)) == 1  # "short"
    assert await online(session, site, gone, start + timedelta(minutes=20))
    assert [m.kind for m in await mails(session)].count("device_online") == 2


async def test_a_device_seen_since_its_session_ended_is_not_reported(
    session: AsyncSession,
) -> None:
    site = await make_site(session)
    await alerts.put_alert_settings(
        session, site.org.id, enabled=True, offline_threshold_seconds=60, now=T0
    )
    device = await make_device(session, site, "p1")
    await session_row(
        session, device, connected_at=T0, ended_at=T0 + timedelta(minutes=1), status="timeout"
    )
    device.last_seen_at = T0 + timedelta(minutes=2)
    await session.flush()
    assert await check_offline_devices(session, T0 + timedelta(hours=1)) == 0


async def test_switching_alerts_on_again_starts_afresh(session: AsyncSession) -> None:
    site = await make_site(session)
    device = await make_device(session, site, "p1")
    await alerts.put_alert_settings(session, site.org.id, enabled=True, now=T0)
    assert await offline(session, site, device, T0 + timedelta(minutes=1))
    await alerts.put_alert_settings(
        session, site.org.id, enabled=False, now=T0 + timedelta(minutes=2)
    )
    await alerts.put_alert_settings(
        session, site.org.id, enabled=True, now=T0 + timedelta(minutes=3)
    )
    # the old open alert is forgotten: a new drop alerts at once, no stale recovery mail
    assert not await online(session, site, device, T0 + timedelta(minutes=4))
    assert await offline(session, site, device, T0 + timedelta(minutes=5))


async def test_the_alert_settings_api(client: httpx.AsyncClient, session: AsyncSession) -> None:
    world = await make_world(session)
    url = f"{API}/orgs/{world.a.id}/alerts"
    default = await client.get(url, headers=world.a.admin)
    assert default.status_code == 200
    assert default.json()["enabled"] is False
    assert default.json()["debounce_seconds"] == alerts.DEFAULT_DEBOUNCE_SECONDS

    body = {"enabled": True, "offline_threshold_seconds": 120, "debounce_seconds": 900}
    put = await client.put(url, json=body, headers=world.a.owner)
    assert put.status_code == 200, put.text
    assert {k: put.json()[k] for k in body} == body
    assert put.json()["enabled_at"] is not None
    assert (await client.get(url, headers=world.a.admin)).json()["offline_threshold_seconds"] == 120

    assert (await client.get(url, headers=world.a.member)).status_code == 403
    assert (await client.put(url, json=body, headers=world.b.admin)).status_code == 404
    for bad, code in (
        ({"enabled": True, "offline_threshold_seconds": -1}, "invalid_offline_threshold"),
        ({"enabled": True, "debounce_seconds": 10**9}, "invalid_debounce"),
    ):
        response = await client.put(url, json=bad, headers=world.a.admin)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == code
    missing = await client.put(url, json={}, headers=world.a.admin)
    assert missing.json()["error"]["code"] == "validation_error"


async def test_after_a_restart_offline_clocks_start_when_the_replica_started(
    session: AsyncSession,
) -> None:
    """A server outage is not every device going offline: the agents get time to come back."""
    site = await make_site(session)
    await alerts.put_alert_settings(
        session, site.org.id, enabled=True, offline_threshold_seconds=300, now=T0
    )
    back = await make_device(session, site, "back")
    gone = await make_device(session, site, "gone")
    shutdown = T0 + timedelta(minutes=1)
    for device in (back, gone):
        await session_row(
            session, device, connected_at=T0, ended_at=shutdown, status="disconnected"
        )
    restart = shutdown + timedelta(hours=1)
    grace_end = restart + timedelta(minutes=2)
    await session_row(session, back, connected_at=restart + timedelta(seconds=20))
    assert await check_offline_devices(session, restart, not_before=grace_end) == 0
    before_threshold = grace_end + timedelta(minutes=4)
    assert await check_offline_devices(session, before_threshold, not_before=grace_end) == 0
    later = grace_end + timedelta(minutes=6)
    assert await check_offline_devices(session, later, not_before=grace_end) == 1
    [alert, _second_admin] = await mails(session)
    assert "host-gone" in alert.subject


async def test_the_offline_mail_words_the_end_reason_the_transition_passes(
    session: AsyncSession,
) -> None:
    """The transition passes the session's end reason (``heartbeat_timeout``, ...), not its
    status: each reads as words in the rendered mail, never as the raw code."""
    site = await make_site(session)
    await alerts.put_alert_settings(session, site.org.id, enabled=True, now=T0)
    expected = {
        "heartbeat_timeout": "stopped answering heartbeats (timed out)",
        "client_closed": "the agent closed its connection",
        "protocol_malformed": "disconnected after a protocol error (malformed)",
        "client_closed_4321": "the agent closed its connection (close code 4321)",
    }
    for number, (reason, words) in enumerate(expected.items()):
        device = await make_device(session, site, f"r{number}")
        assert await on_device_offline(
            session, site.org.id, device.peer_id, device.hostname, device.virtual_ip, reason,
            T0 + timedelta(minutes=number + 1),
        )  # fmt: skip
        mail = (await mails(session))[-1]
        assert f"Reason:      {words}\n" in mail.text
        assert reason not in mail.text
        assert mail.html is not None
        assert f"<td>{words}</td>" in mail.html
