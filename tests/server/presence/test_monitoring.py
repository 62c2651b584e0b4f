"""The seed's monitoring questions over HTTP, on rows written with chosen timestamps."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.orgs.models import OrgRole
from wiremesh.server.presence.models import ConnectionStatus
from wiremesh.server.presence.monitoring import summarize
from wiremesh.server.presence.schemas import ConnectionOut

MINUTE = timedelta(minutes=1)


@dataclass
class World:
    """Org A (owner, plain member) with devices laptop, phone, server; org B with one device."""

    org_a: int
    org_b: int
    owner_token: str
    member_token: str
    outsider_token: str
    admin_token: str
    laptop: VirtualIPMapping
    phone: VirtualIPMapping
    server: VirtualIPMapping
    other: VirtualIPMapping


_next_credential = iter(range(10**6))


def _device(
    org_id: int,
    user_id: int,
    hostname: str,
    ip: str,
    peer_id: str,
    enrolled_at: datetime | None = None,
) -> VirtualIPMapping:
    """A device enrolled a month ago unless told otherwise, so its history can start then."""
    number = next(_next_credential)
    return VirtualIPMapping(
        org_id=org_id,
        user_id=user_id,
        peer_id=peer_id,
        virtual_ip=ip,
        hostname=hostname,
        credential_lookup=f"look{number:012d}",
        credential_hash="0" * 64,
        created_at=enrolled_at or utcnow() - timedelta(days=30),
    )


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    async with sessionmaker() as session:
        org_a = await make_org(session, name="acme", network_cidr="100.64.0.0/24")
        org_b = await make_org(session, name="beta", network_cidr="100.64.1.0/24")
        owner = await make_user(session, email="owner@example.com")
        member = await make_user(session, email="member@example.com")
        outsider = await make_user(session)
        admin = await make_user(session, server_admin=True)
        await make_member(session, org_a, owner, OrgRole.OWNER)
        await make_member(session, org_a, member, OrgRole.MEMBER)
        await make_member(session, org_b, outsider, OrgRole.OWNER)
        devices = [
            _device(org_a.id, owner.id, "laptop", "100.64.0.1", "peer-laptop"),
            _device(org_a.id, member.id, "phone", "100.64.0.2", "peer-phone"),
            _device(org_a.id, owner.id, "server", "100.64.0.3", "peer-server"),
            # Same peer id as the laptop, in another org: never mixed up with it.
            _device(org_b.id, outsider.id, "other", "100.64.1.1", "peer-laptop"),
        ]
        session.add_all(devices)
        await session.flush()
        world = World(
            org_a=org_a.id,
            org_b=org_b.id,
            owner_token=await make_token(session, owner),
            member_token=await make_token(session, member),
            outsider_token=await make_token(session, outsider),
            admin_token=await make_token(session, admin),
            laptop=devices[0],
            phone=devices[1],
            server=devices[2],
            other=devices[3],
        )
        await session.commit()
        return world


def _row(
    device: VirtualIPMapping,
    *,
    status: str = "connected",
    connected_at: datetime,
    disconnected_at: datetime | None = None,
    last_pong_at: datetime | None = None,
    last_seen_at: datetime | None = None,
    server_id: str | None = None,
) -> ConnectionStatus:
    return ConnectionStatus(
        user_id=device.user_id,
        org_id=device.org_id,
        virtual_ip=device.virtual_ip,
        peer_id=device.peer_id,
        connection_id=uuid.uuid4(),
        public_ip="203.0.113.7",
        public_port=51820,
        status=status,
        connected_at=connected_at,
        disconnected_at=disconnected_at,
        last_ping_at=last_pong_at,
        last_pong_at=last_pong_at,
        last_seen_at=last_seen_at or last_pong_at,
        end_reason=None if status == "connected" else f"test_{status}",
        server_id=server_id,
    )


async def _insert(
    sessionmaker: async_sessionmaker[AsyncSession], rows: list[ConnectionStatus]
) -> list[int]:
    async with sessionmaker() as session:
        session.add_all(rows)
        await session.commit()
        return [row.id for row in rows]


# --- who is online --------------------------------------------------------------------------


async def test_org_connections_filter_by_status_and_order_by_last_seen(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    ids = await _insert(
        sessionmaker,
        [
            _row(world.laptop, connected_at=now - 50 * MINUTE, last_pong_at=now - 2 * MINUTE),
            _row(world.phone, connected_at=now - 30 * MINUTE, last_pong_at=now - 1 * MINUTE),
            _row(
                world.server,
                status="timeout",
                connected_at=now - 90 * MINUTE,
                disconnected_at=now - 60 * MINUTE,
                last_pong_at=now - 61 * MINUTE,
            ),
            _row(
                world.laptop,
                status="disconnected",
                connected_at=now - 80 * MINUTE,
                disconnected_at=now - 79 * MINUTE,
                last_pong_at=now - 30 * MINUTE,
            ),
            _row(world.other, connected_at=now - 5 * MINUTE, last_pong_at=now),
        ],
    )
    url = f"/api/v1/orgs/{world.org_a}/connections"
    everything = await client.get(url, headers=auth(world.member_token))
    assert everything.status_code == 200
    assert [c["id"] for c in everything.json()] == [ids[1], ids[0], ids[3], ids[2]]
    online = await client.get(url, params={"status": "connected"}, headers=auth(world.owner_token))
    body = online.json()
    assert [c["hostname"] for c in body] == ["phone", "laptop"]
    assert body[0]["user_email"] == "member@example.com"
    assert body[0]["device_id"] == world.phone.id
    assert body[0]["duration_seconds"] is None
    timeouts = await client.get(url, params={"status": "timeout"}, headers=auth(world.owner_token))
    [timeout] = timeouts.json()
    assert timeout["hostname"] == "server"
    assert timeout["duration_seconds"] == pytest.approx(30 * 60)
    paged = await client.get(url, params={"limit": 2, "offset": 1}, headers=auth(world.owner_token))
    assert [c["id"] for c in paged.json()] == [ids[0], ids[3]]
    bad = await client.get(url, params={"status": "asleep"}, headers=auth(world.owner_token))
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "validation_error"
    hidden = await client.get(url, headers=auth(world.outsider_token))
    assert hidden.status_code == 404


async def test_at_risk_lists_silent_live_connections(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    s = timedelta(seconds=1)
    async with sessionmaker() as session:
        tablet = _device(world.org_a, world.laptop.user_id, "tablet", "100.64.0.4", "peer-tablet")
        session.add(tablet)
        await session.commit()
    ids = await _insert(
        sessionmaker,
        [
            _row(world.laptop, connected_at=now - 600 * s, last_pong_at=now - 30 * s),
            _row(world.phone, connected_at=now - 600 * s, last_pong_at=now - 600 * s),
            _row(world.server, connected_at=now - 120 * s),  # never answered a ping
            _row(tablet, connected_at=now - 1 * s),  # too new to tell
            _row(
                world.phone,
                status="timeout",
                connected_at=now - 900 * s,
                disconnected_at=now - 800 * s,
                last_pong_at=now - 850 * s,
            ),
            _row(world.other, connected_at=now - 600 * s, last_pong_at=now - 600 * s),
        ],
    )
    url = f"/api/v1/orgs/{world.org_a}/connections/at-risk"
    # Margins of many seconds, so a slow machine does not make the new one look silent.
    some = await client.get(url, params={"seconds": 20}, headers=auth(world.member_token))
    assert some.status_code == 200
    assert [c["id"] for c in some.json()] == [ids[2], ids[1], ids[0]]
    minute = await client.get(url, params={"seconds": 60}, headers=auth(world.member_token))
    assert [c["id"] for c in minute.json()] == [ids[2], ids[1]]
    hour = await client.get(url, params={"seconds": 3600}, headers=auth(world.member_token))
    assert hour.json() == []
    for bad in ("0", "-3", "abc"):
        refused = await client.get(url, params={"seconds": bad}, headers=auth(world.member_token))
        assert refused.status_code == 422, bad


# --- one device's history -------------------------------------------------------------------


async def test_device_history_sessions_durations_and_summary(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    t0 = utcnow().replace(microsecond=0) - timedelta(hours=3)
    until = t0 + timedelta(hours=1)
    laptop = world.laptop
    ids = await _insert(
        sessionmaker,
        [
            # Started before the period: only its 5 minutes inside count.
            _row(
                laptop,
                status="disconnected",
                connected_at=t0 - 10 * MINUTE,
                disconnected_at=t0 + 5 * MINUTE,
            ),
            # Back 30 s later: a flap.
            _row(
                laptop,
                status="timeout",
                connected_at=t0 + 5 * MINUTE + timedelta(seconds=30),
                disconnected_at=t0 + 20 * MINUTE,
            ),
            # Back 5 min later: a flap only with a window of 5 minutes or more.
            _row(
                laptop,
                status="disconnected",
                connected_at=t0 + 25 * MINUTE,
                disconnected_at=t0 + 30 * MINUTE,
            ),
            # Still connected: counts up to the end of the period.
            _row(laptop, connected_at=t0 + 50 * MINUTE),
            # Outside the period on both sides.
            _row(
                laptop,
                status="disconnected",
                connected_at=t0 - 120 * MINUTE,
                disconnected_at=t0 - 60 * MINUTE,
            ),
            _row(
                laptop,
                status="disconnected",
                connected_at=t0 + 120 * MINUTE,
                disconnected_at=t0 + 130 * MINUTE,
            ),
            # Other devices, one of them with the same peer id in another org.
            _row(world.phone, connected_at=t0 + 10 * MINUTE),
            _row(world.other, connected_at=t0 + 10 * MINUTE),
        ],
    )
    url = f"/api/v1/orgs/{world.org_a}/devices/{laptop.id}/history"
    period = {"since": t0.isoformat(), "until": until.isoformat()}
    response = await client.get(url, params=period, headers=auth(world.member_token))
    assert response.status_code == 200, response.text
    history = response.json()
    assert (history["device_id"], history["hostname"]) == (laptop.id, "laptop")
    assert [s["id"] for s in history["sessions"]] == [ids[3], ids[2], ids[1], ids[0]]
    assert [s["duration_seconds"] for s in history["sessions"]] == [
        None,
        300.0,
        870.0,
        900.0,
    ]
    summary = history["summary"]
    connected = 5 * 60 + 870 + 5 * 60 + 10 * 60
    assert summary == {
        "sessions": 4,
        "timeouts": 1,
        "disconnects": 2,
        "flaps": 1,
        "connected_seconds": connected,
        "availability": pytest.approx(connected / 3600, abs=1e-6),
    }
    wider = await client.get(
        url, params={**period, "flap_window_seconds": 300}, headers=auth(world.member_token)
    )
    assert wider.json()["summary"]["flaps"] == 2
    assert wider.json()["flap_window_seconds"] == 300


async def test_availability_counts_from_the_enrollment_not_before(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow().replace(microsecond=0)
    t0 = now - timedelta(hours=2)
    async with sessionmaker() as session:
        fresh = _device(
            world.org_a, world.laptop.user_id, "fresh", "100.64.0.9", "peer-fresh", now - MINUTE
        )
        mid = _device(
            world.org_a, world.laptop.user_id, "mid", "100.64.0.10", "peer-mid", t0 + 30 * MINUTE
        )
        session.add_all([fresh, mid])
        await session.commit()
    await _insert(
        sessionmaker,
        [
            # Online since it enrolled a minute ago: fully available, not 1/10080 of a week.
            _row(fresh, connected_at=now - MINUTE + timedelta(seconds=1)),
            # Enrolled half-way through the hour asked for, then online for 15 of its 30 min.
            _row(
                mid,
                status="disconnected",
                connected_at=t0 + 30 * MINUTE,
                disconnected_at=t0 + 45 * MINUTE,
            ),
        ],
    )
    headers = auth(world.member_token)
    url = f"/api/v1/orgs/{world.org_a}"
    week = await client.get(f"{url}/devices/{fresh.id}/history", headers=headers)
    assert week.status_code == 200, week.text
    assert week.json()["summary"]["availability"] == pytest.approx(1.0, abs=0.05)
    # online from a second after its enrollment until the request: at most since then
    assert (
        week.json()["summary"]["connected_seconds"] <= (utcnow() - (now - MINUTE)).total_seconds()
    )
    period = {"since": t0.isoformat(), "until": (t0 + 60 * MINUTE).isoformat()}
    hour = await client.get(f"{url}/devices/{mid.id}/history", params=period, headers=headers)
    assert hour.status_code == 200, hour.text
    assert hour.json()["since"].startswith(t0.isoformat()[:19]), "the period asked for stays"
    assert hour.json()["summary"]["connected_seconds"] == 15 * 60
    assert hour.json()["summary"]["availability"] == pytest.approx(0.5, abs=1e-6)
    # A period that ended before the enrollment had nothing to be available for.
    before = {"since": (t0 - 60 * MINUTE).isoformat(), "until": t0.isoformat()}
    early = await client.get(f"{url}/devices/{mid.id}/history", params=before, headers=headers)
    assert early.json()["summary"]["availability"] == 0
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert "enrollment" in schema["HistorySummary"]["properties"]["availability"]["description"]


async def test_device_history_default_period_and_refusals(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    recent = utcnow() - timedelta(days=6)
    ids = await _insert(
        sessionmaker,
        [
            _row(
                world.phone,
                status="disconnected",
                connected_at=recent,
                disconnected_at=recent + MINUTE,
            ),
            _row(
                world.phone,
                status="disconnected",
                connected_at=recent - timedelta(days=3),
                disconnected_at=recent - timedelta(days=2),
            ),
        ],
    )
    default = await client.get(
        f"/api/v1/orgs/{world.org_a}/devices/{world.phone.id}/history",
        headers=auth(world.member_token),
    )
    assert [s["id"] for s in default.json()["sessions"]] == [ids[0]], "default: the last 7 days"
    url = f"/api/v1/orgs/{world.org_a}/devices/{world.laptop.id}/history"
    now = datetime(2030, 1, 1, tzinfo=UTC)
    headers = auth(world.owner_token)
    for since, until in [(now, now), (now + MINUTE, now)]:
        response = await client.get(
            url, params={"since": since.isoformat(), "until": until.isoformat()}, headers=headers
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_period"
    naive = await client.get(url, params={"since": "2030-01-01T00:00:00"}, headers=headers)
    assert naive.status_code == 422
    assert naive.json()["error"]["code"] == "naive_datetime"
    garbage = await client.get(url, params={"since": "yesterday"}, headers=headers)
    assert garbage.status_code == 422
    assert garbage.json()["error"]["code"] == "validation_error"
    foreign = await client.get(
        f"/api/v1/orgs/{world.org_a}/devices/{world.other.id}/history", headers=headers
    )
    assert foreign.status_code == 404


# --- stale addresses ------------------------------------------------------------------------


async def test_stale_ips_include_never_seen(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    async with sessionmaker() as session:
        for device, seen in [
            (world.laptop, now - timedelta(hours=2)),
            (world.phone, None),
            (world.server, now - timedelta(minutes=10)),
            (world.other, None),
        ]:
            stored = await session.get(VirtualIPMapping, device.id)
            assert stored is not None
            stored.last_seen_at = seen
        await session.commit()
    url = f"/api/v1/orgs/{world.org_a}/ips/stale"
    hour = await client.get(url, params={"hours": 1}, headers=auth(world.member_token))
    assert hour.status_code == 200
    assert [(a["hostname"], a["virtual_ip"]) for a in hour.json()] == [
        ("phone", "100.64.0.2"),
        ("laptop", "100.64.0.1"),
    ]
    assert hour.json()[0]["last_seen_at"] is None
    assert hour.json()[1]["org_name"] == "acme"
    quarter = await client.get(url, params={"hours": 0.1}, headers=auth(world.member_token))
    assert [a["hostname"] for a in quarter.json()] == ["phone", "laptop", "server"]
    default = await client.get(url, headers=auth(world.member_token))
    assert [a["hostname"] for a in default.json()] == ["phone"]
    assert (
        await client.get(url, params={"hours": 0}, headers=auth(world.member_token))
    ).status_code == 422


# --- server-wide views ----------------------------------------------------------------------


async def test_global_views_are_for_server_administrators(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    await _insert(
        sessionmaker,
        [
            _row(world.laptop, connected_at=now - 10 * MINUTE, last_pong_at=now - 5 * MINUTE),
            _row(world.other, connected_at=now - 10 * MINUTE, last_pong_at=now - 4 * MINUTE),
        ],
    )
    for path in ("/api/v1/connections", "/api/v1/connections/at-risk", "/api/v1/ips/stale"):
        refused = await client.get(path, headers=auth(world.owner_token))
        assert refused.status_code == 403, path
        assert refused.json()["error"]["code"] == "forbidden"
        assert (await client.get(path)).status_code == 401
    cleanup = await client.post("/api/v1/connections/cleanup", headers=auth(world.owner_token))
    assert cleanup.status_code == 403
    admin = auth(world.admin_token)
    everything = await client.get("/api/v1/connections", headers=admin)
    assert [c["hostname"] for c in everything.json()] == ["other", "laptop"]
    only_a = await client.get("/api/v1/connections", params={"org_id": world.org_a}, headers=admin)
    assert [c["hostname"] for c in only_a.json()] == ["laptop"]
    risky = await client.get("/api/v1/connections/at-risk", params={"seconds": 270}, headers=admin)
    assert [c["hostname"] for c in risky.json()] == ["laptop"]
    stale = await client.get("/api/v1/ips/stale", headers=admin)
    assert sorted(a["hostname"] for a in stale.json()) == ["laptop", "other", "phone", "server"]
    stale_b = await client.get("/api/v1/ips/stale", params={"org_id": world.org_b}, headers=admin)
    assert [a["org_name"] for a in stale_b.json()] == ["beta"]


# --- summarize (pure) -----------------------------------------------------------------------

T0 = datetime(2030, 6, 1, tzinfo=UTC)


def _session(
    start: datetime, end: datetime | None, status: str = "disconnected", number: int = 1
) -> ConnectionOut:
    return ConnectionOut(
        id=number,
        connection_id=uuid.uuid4(),
        org_id=1,
        user_id=1,
        user_email="u@example.com",
        peer_id="peer-x",
        hostname="x",
        device_id=1,
        virtual_ip="100.64.0.1",
        public_ip=None,
        public_port=None,
        status="connected" if end is None else status,
        connected_at=start,
        disconnected_at=end,
        last_ping_at=None,
        last_pong_at=None,
        last_seen_at=None,
        end_reason=None,
        close_code=None,
        duration_seconds=None if end is None else (end - start).total_seconds(),
    )


def test_summarize_an_empty_period() -> None:
    summary = summarize([], T0, T0 + MINUTE, MINUTE)
    assert (summary.sessions, summary.flaps, summary.connected_seconds) == (0, 0, 0)
    assert summary.availability == 0


def test_summarize_clips_to_the_period_and_counts_flaps() -> None:
    sessions = [
        _session(T0 - 5 * MINUTE, T0 + 10 * MINUTE),  # 10 min inside
        _session(T0 + 10 * MINUTE + timedelta(seconds=59), T0 + 20 * MINUTE, "timeout"),
        _session(T0 + 21 * MINUTE + timedelta(seconds=1), None),  # 61 s later: no flap
    ]
    summary = summarize(sessions, T0, T0 + 30 * MINUTE, MINUTE)
    assert summary.sessions == 3
    assert summary.timeouts == 1
    assert summary.disconnects == 1
    assert summary.flaps == 1
    expected = 10 * 60 + (9 * 60 + 1) + (9 * 60 - 1)
    assert summary.connected_seconds == expected
    assert summary.availability == pytest.approx(expected / 1800, abs=1e-6)


def test_summarize_counts_the_whole_period_of_a_session_that_spans_it() -> None:
    summary = summarize([_session(T0 - MINUTE, T0 + 9 * MINUTE)], T0, T0 + 5 * MINUTE, MINUTE)
    assert summary.connected_seconds == 300
    assert summary.availability == 1.0


def test_overlapping_sessions_are_not_counted_twice() -> None:
    """A superseded session ends just after its successor started; the overlap counts once."""
    first = _session(T0, T0 + 10 * MINUTE + timedelta(seconds=1))
    second = _session(T0 + 10 * MINUTE, T0 + 20 * MINUTE, number=2)
    summary = summarize([first, second], T0, T0 + 40 * MINUTE, MINUTE)
    assert summary.connected_seconds == 20 * 60
    assert summary.availability == 0.5
    assert summary.flaps == 1


_offsets = st.integers(min_value=-3600, max_value=7200)


@given(
    spans=st.lists(
        st.tuples(_offsets, st.one_of(st.none(), st.integers(min_value=0, max_value=3600))),
        max_size=8,
    ),
    period=st.integers(min_value=1, max_value=3600),
    window=st.integers(min_value=1, max_value=600),
)
def test_summary_stays_within_the_period(
    spans: list[tuple[int, int | None]], period: int, window: int
) -> None:
    sessions = [
        _session(
            T0 + timedelta(seconds=start),
            None if length is None else T0 + timedelta(seconds=start + length),
            number=index,
        )
        for index, (start, length) in enumerate(spans)
    ]
    summary = summarize(sessions, T0, T0 + timedelta(seconds=period), timedelta(seconds=window))
    assert 0.0 <= summary.availability <= 1.0
    assert 0.0 <= summary.connected_seconds <= period
    assert summary.flaps <= max(len(sessions) - 1, 0)
    assert summary.sessions == summary.timeouts + summary.disconnects + sum(
        1 for s in sessions if s.disconnected_at is None
    )
