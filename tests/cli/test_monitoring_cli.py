"""`wiremesh connections`, `wiremesh ips stale` and `wiremesh cleanup` against a test's database."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, ok, query, refused
from tests.factories import make_org, make_user
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.presence.models import ConnectionStatus

pytestmark = pytest.mark.usefixtures("cli_database")


SECOND = timedelta(seconds=1)


def seed(settings: Settings) -> dict[str, int]:
    """Two orgs; devices seen at chosen times; connections live, silent, ended old and new."""
    now = utcnow()

    async def work(session: AsyncSession) -> dict[str, int]:
        acme = await make_org(session, name="acme", network_cidr="100.64.0.0/24")
        beta = await make_org(session, name="beta", network_cidr="100.64.1.0/24")
        user = await make_user(session, email="ann@example.com")
        devices: dict[str, VirtualIPMapping] = {}
        for number, (org, hostname, seen) in enumerate(
            [
                (acme, "fresh", now - 5 * SECOND),
                (acme, "quiet", now - 90 * SECOND),
                (acme, "unused", now - timedelta(hours=3)),
                (acme, "never", None),
                (beta, "far", None),
            ]
        ):
            devices[hostname] = VirtualIPMapping(
                org_id=org.id,
                user_id=user.id,
                peer_id=f"peer-{hostname}",
                virtual_ip=f"100.64.{0 if org is acme else 1}.{number + 1}",
                hostname=hostname,
                credential_lookup=f"lookup{number:010d}",
                credential_hash="0" * 64,
                last_seen_at=seen,
            )
        session.add_all(devices.values())

        def row(
            hostname: str,
            connected_at: datetime,
            pong: datetime | None,
            ended: datetime | None = None,
        ) -> ConnectionStatus:
            device = devices[hostname]
            return ConnectionStatus(
                user_id=user.id,
                org_id=device.org_id,
                virtual_ip=device.virtual_ip,
                peer_id=device.peer_id,
                connection_id=uuid.uuid4(),
                status="connected" if ended is None else "timeout",
                connected_at=connected_at,
                disconnected_at=ended,
                last_pong_at=pong,
                last_seen_at=pong or connected_at,
                end_reason=None if ended is None else "heartbeat_timeout",
            )

        session.add_all(
            [
                row("fresh", now - 600 * SECOND, now - 2 * SECOND),
                row("quiet", now - 600 * SECOND, now - 90 * SECOND),
                row("far", now - 600 * SECOND, now - 60 * SECOND),
                row("unused", now - timedelta(days=3), None, now - timedelta(days=2)),
                row("unused", now - timedelta(hours=4), None, now - timedelta(hours=3)),
            ]
        )
        await session.commit()
        return {"acme": acme.id, "beta": beta.id}

    return query(settings, work)


def test_connections_at_risk_and_stale_ips(settings: Settings) -> None:
    orgs = seed(settings)
    online = json.loads(ok("connections", "list", "--status", "connected", "--json"))
    assert [c["hostname"] for c in online] == ["fresh", "far", "quiet"]
    assert online[0]["user_email"] == "ann@example.com"
    assert online[0]["status"] == "connected"
    in_acme = json.loads(
        ok("connections", "list", "--status", "connected", "--org", "acme", "--json")
    )
    assert [c["hostname"] for c in in_acme] == ["fresh", "quiet"]
    by_id = json.loads(ok("connections", "list", "--org", str(orgs["acme"]), "--json"))
    assert [c["hostname"] for c in by_id] == ["fresh", "quiet", "unused", "unused"]
    assert [c["status"] for c in by_id[2:]] == ["timeout", "timeout"]
    assert [c["disconnected_at"] is None for c in by_id] == [True, True, False, False]
    ended = datetime.fromisoformat(by_id[3]["disconnected_at"])
    assert abs((utcnow() - timedelta(days=2) - ended).total_seconds()) < 60
    table = ok("connections", "list", "--status", "timeout")
    lines = table.splitlines()
    assert lines[0].split() == [
        "ORG_ID", "USER", "HOSTNAME", "VIRTUAL_IP", "PUBLIC", "STATUS",
        "CONNECTED_AT", "DISCONNECTED_AT", "LAST_SEEN_AT", "END_REASON",
    ]  # fmt: skip
    assert table.count("heartbeat_timeout") == 2
    # Every cell lines up under its header, and an ended row shows when it ended.
    for line in lines[1:]:
        cells = dict(zip(lines[0].split(), line.split(), strict=True))
        assert cells["STATUS"] == "timeout"
        assert cells["END_REASON"] == "heartbeat_timeout"
        disconnected = datetime.fromisoformat(cells["DISCONNECTED_AT"])
        assert disconnected > datetime.fromisoformat(cells["CONNECTED_AT"])
        assert cells["DISCONNECTED_AT"].endswith("Z")
    live = ok("connections", "list", "--status", "connected").splitlines()
    column = live[0].index("DISCONNECTED_AT")
    assert all(line[column:].startswith("- ") for line in live[1:])
    # Live sessions only: the end of a session has no column there.
    risky = ok("connections", "at-risk", "--seconds", "30").splitlines()
    assert "DISCONNECTED_AT" not in risky[0]
    assert "END_REASON" not in risky[0]

    # Margins of tens of seconds: a slow machine must not make "fresh" look silent.
    at_risk = json.loads(ok("connections", "at-risk", "--seconds", "30", "--json"))
    assert [c["hostname"] for c in at_risk] == ["quiet", "far"]
    quieter = json.loads(ok("connections", "at-risk", "--seconds", "75", "--json"))
    assert [c["hostname"] for c in quieter] == ["quiet"]
    only_beta = json.loads(
        ok("connections", "at-risk", "--seconds", "30", "--org", "beta", "--json")
    )
    assert [c["hostname"] for c in only_beta] == ["far"]
    assert ok("connections", "at-risk", "--seconds", "3600") == "(none)\n"

    # Virtual IPs unused for an hour, or never used.
    stale = json.loads(ok("ips", "stale", "--hours", "1", "--json"))
    assert [(a["hostname"], a["org_name"]) for a in stale] == [
        ("never", "acme"),
        ("far", "beta"),
        ("unused", "acme"),
    ]
    assert stale[0]["last_seen_at"] is None
    in_acme = json.loads(ok("ips", "stale", "--hours", "0.02", "--org", "acme", "--json"))
    assert [a["hostname"] for a in in_acme] == ["never", "unused", "quiet"]
    assert "unused" in ok("ips", "stale", "--hours", "1")


def test_cleanup_prints_the_count(settings: Settings) -> None:
    seed(settings)
    out = ok("cleanup", "--older-than", "1d")
    assert out.startswith("deleted 1 connection rows that ended before ")

    async def statuses(session: AsyncSession) -> list[str]:
        rows = await session.execute(
            select(ConnectionStatus.status, func.count()).group_by(ConnectionStatus.status)
        )
        return sorted(f"{status}:{count}" for status, count in rows)

    assert query(settings, statuses) == ["connected:3", "timeout:1"]
    again = json.loads(ok("cleanup", "--older-than", "1h", "--json"))
    assert again["deleted"] == 1
    cutoff = datetime.fromisoformat(again["cutoff"])
    assert abs((utcnow() - timedelta(hours=1) - cutoff).total_seconds()) < 60
    assert query(settings, statuses) == ["connected:3"]


def test_refusals(settings: Settings) -> None:
    seed(settings)
    assert "is not a duration" in refused("cleanup", "--older-than", "7x")
    assert "too long" in refused("cleanup", "--older-than", "999999w")
    assert "organization not found" in refused("connections", "list", "--org", "ghost")
    assert "organization not found" in refused("connections", "at-risk", "--org", "ghost")
    assert "organization not found" in refused("ips", "stale", "--org", "ghost")
    for args in (
        ("connections", "list", "--status", "asleep"),
        ("connections", "at-risk", "--seconds", "0"),
        ("connections", "at-risk", "--seconds", "1e12"),
        ("ips", "stale", "--hours", "1e12"),
    ):
        usage = invoke(*args)
        assert usage.exit_code == 2, args  # a usage error, reported by the CLI framework
        assert "Traceback" not in usage.output
