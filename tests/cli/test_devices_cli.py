"""`wiremesh setup-key` and `wiremesh device` against a test's database."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, ok, query, refused
from wiremesh.server.config import Settings
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices import service
from wiremesh.server.devices.models import SetupKey, VirtualIPMapping
from wiremesh.server.errors import ApiError
from wiremesh.server.paths.models import PeerPath
from wiremesh.server.presence.models import ConnectionStatus

pytestmark = pytest.mark.usefixtures("cli_database")


def make_org(name: str, network: str) -> None:
    email = f"owner@{name}.example.com"
    ok("user", "create", "--email", email, "--name", "Owner")
    ok("org", "create", name, "--network", network, "--owner", email)


def enroll(settings: Settings, key: str, hostname: str) -> dict[str, Any]:
    """Enroll a device with a key, as the enroll endpoint does; its row, or the refusal."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        try:
            device, _org, _credential = await service.enroll(session, key, hostname, None)
        except ApiError as exc:
            return {"error": exc.code}
        await session.commit()
        return {"id": device.id, "virtual_ip": device.virtual_ip, "hostname": device.hostname}

    return query(settings, work)


def key_for(org: str, *extra: str) -> str:
    return ok("setup-key", "create", "--org", org, "--reusable", *extra).strip()


# --- setup keys -------------------------------------------------------------------------------


def test_setup_key_create_prints_a_key_that_enrolls(settings: Settings) -> None:
    make_org("acme", "100.64.0.0/24")
    result = invoke("setup-key", "create", "--org", "acme", "--reusable", "--expires", "1h")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("wmk_")
    assert len(result.stdout.splitlines()) == 1, "stdout is the key alone, for scripts"
    assert "shown once" in result.stderr
    first = enroll(settings, key, "laptop")
    second = enroll(settings, key, "phone")
    assert (first["virtual_ip"], second["virtual_ip"]) == ("100.64.0.1", "100.64.0.2")

    [listed] = json.loads(ok("setup-key", "list", "--org", "acme", "--json"))
    assert (listed["reusable"], listed["used"], listed["usable"]) == (True, 2, True)
    expires = datetime.fromisoformat(listed["expires_at"])
    assert abs((expires - utcnow() - timedelta(hours=1)).total_seconds()) < 60
    table = ok("setup-key", "list", "--org", "acme")
    assert key not in table
    assert key not in json.dumps(listed)

    assert "setup key 1 revoked" in ok("setup-key", "revoke", "1", "--org", "acme")
    [revoked] = json.loads(ok("setup-key", "list", "--org", "acme", "--json"))
    assert (revoked["revoked"], revoked["usable"]) == (True, False)
    assert enroll(settings, key, "tablet") == {"error": "invalid_setup_key"}


def test_a_one_off_key_with_an_owner_and_json(settings: Settings) -> None:
    make_org("acme", "100.64.0.0/24")
    ok("user", "create", "--email", "ann@example.com", "--name", "Ann")
    ok("member", "add", "--org", "acme", "--user", "ann@example.com")
    created = json.loads(
        ok("setup-key", "create", "--org", "acme", "--user", "ann@example.com", "--json")
    )
    assert (created["reusable"], created["usage_limit"]) == (False, 1)
    assert enroll(settings, created["key"], "one")["virtual_ip"] == "100.64.0.1"
    assert enroll(settings, created["key"], "two") == {"error": "invalid_setup_key"}

    async def owners(session: AsyncSession) -> list[str]:
        rows = await session.execute(select(VirtualIPMapping.user_id))
        return [str(user_id) for user_id in rows.scalars()]

    ann_id = json.loads(ok("user", "list", "--json"))[-1]["id"]
    assert query(settings, owners) == [str(ann_id)]

    async def stored(session: AsyncSession) -> str:
        row = (await session.execute(select(SetupKey))).scalar_one()
        return row.secret_hash

    assert created["key"] not in query(settings, stored)


def test_setup_key_refusals(settings: Settings) -> None:
    make_org("acme", "100.64.0.0/24")
    for args, words in [
        (("--org", "ghost"), "organization not found"),
        (("--org", "acme", "--expires", "7x"), "'7x' is not a duration"),
        (("--org", "acme", "--expires", "30s"), "invalid_expiry"),
        (("--org", "acme", "--reusable", "--expires", "999999w"), "invalid_expiry"),
        (("--org", "acme", "--usage-limit", "5"), "invalid_usage_limit"),
        (("--org", "acme", "--user", "nobody@example.com"), "user not found"),
    ]:
        assert words in refused("setup-key", "create", *args), args
    assert "not found" in refused("setup-key", "revoke", "99", "--org", "acme")
    assert "organization not found" in refused("setup-key", "list", "--org", "ghost")
    assert json.loads(ok("setup-key", "list", "--org", "acme", "--json")) == []


# --- devices ----------------------------------------------------------------------------------


def test_device_list_rename_revoke_delete(settings: Settings) -> None:
    make_org("acme", "100.64.0.0/24")
    key = key_for("acme")
    laptop = enroll(settings, key, "laptop")
    enroll(settings, key, "phone")
    listed = json.loads(ok("device", "list", "--org", "acme", "--json"))
    assert [(d["hostname"], d["virtual_ip"], d["revoked"]) for d in listed] == [
        ("laptop", "100.64.0.1", False),
        ("phone", "100.64.0.2", False),
    ]
    table = ok("device", "list", "--org", "acme")
    assert table.splitlines()[0].split()[:3] == ["ID", "ORG_ID", "HOSTNAME"]

    renamed = json.loads(ok("device", "rename", "laptop", "workstation", "--json"))
    assert (renamed["id"], renamed["hostname"]) == (laptop["id"], "workstation")
    # Any reference works: id, peer id, hostname or virtual IP.
    assert "device workstation revoked" in ok("device", "revoke", "100.64.0.1")
    assert "already_revoked" in refused("device", "revoke", str(laptop["id"]))
    states = {
        d["hostname"]: d["revoked"]
        for d in json.loads(ok("device", "list", "--org", "acme", "--json"))
    }
    assert states == {"workstation": True, "phone": False}

    peer_id = listed[1]["peer_id"]
    assert "device phone deleted" in ok("device", "delete", peer_id, "--yes")
    remaining = json.loads(ok("device", "list", "--org", "acme", "--json"))
    assert [d["hostname"] for d in remaining] == ["workstation"]
    # The freed address goes to the next device.
    assert enroll(settings, key, "tablet")["virtual_ip"] == "100.64.0.2"
    # Without --yes, delete asks first.
    declined = invoke("device", "delete", "tablet", input="n\n")
    assert declined.exit_code == 1
    assert len(json.loads(ok("device", "list", "--org", "acme", "--json"))) == 2
    ok("device", "delete", "tablet", input="y\n")
    assert len(json.loads(ok("device", "list", "--org", "acme", "--json"))) == 1


def test_device_refusals(settings: Settings) -> None:
    make_org("acme", "100.64.0.0/24")
    make_org("beta", "100.64.1.0/24")
    enroll(settings, key_for("acme"), "laptop")
    enroll(settings, key_for("beta"), "laptop")
    stderr = refused("device", "rename", "laptop", "other")
    assert "ambiguous_device" in stderr
    assert "--org" in stderr
    renamed = json.loads(ok("device", "rename", "laptop", "other", "--org", "beta", "--json"))
    assert renamed["virtual_ip"] == "100.64.1.1"
    assert "device not found" in refused("device", "revoke", "ghost")
    assert "device not found" in refused("device", "revoke", "laptop", "--org", "beta")
    assert "organization not found" in refused("device", "list", "--org", "ghost")
    assert "validation_error" in refused("device", "rename", "laptop", "no spaces", "--org", "acme")
    assert "is not a duration" in refused("device", "history", "laptop", "--period", "7x")
    assert "is not a duration" in refused("device", "history", "other", "--flap-window", "soon")
    assert "period" in refused("device", "history", "other", "--period", "999999w")


def test_device_history_json(settings: Settings) -> None:
    make_org("acme", "100.64.0.0/24")
    device = enroll(settings, key_for("acme"), "laptop")
    now = utcnow().replace(microsecond=0)

    async def sessions(session: AsyncSession) -> None:
        row = await session.get(VirtualIPMapping, device["id"])
        assert row is not None
        row.created_at = now - timedelta(days=30)  # its history goes back before today
        for start, minutes, status in [
            (now - timedelta(hours=2), 30, "disconnected"),
            (now - timedelta(hours=1, minutes=29, seconds=30), 20, "timeout"),
            (now - timedelta(days=9), 5, "disconnected"),
        ]:
            session.add(
                ConnectionStatus(
                    user_id=row.user_id,
                    org_id=row.org_id,
                    virtual_ip=row.virtual_ip,
                    peer_id=row.peer_id,
                    connection_id=uuid.uuid4(),
                    status=status,
                    connected_at=start,
                    disconnected_at=start + timedelta(minutes=minutes),
                    end_reason="test",
                )
            )
        await session.commit()

    query(settings, sessions)
    history = json.loads(ok("device", "history", "laptop", "--json"))
    assert history["hostname"] == "laptop"
    assert [s["status"] for s in history["sessions"]] == ["timeout", "disconnected"]
    assert [s["duration_seconds"] for s in history["sessions"]] == [1200.0, 1800.0]
    summary = history["summary"]
    assert (summary["sessions"], summary["timeouts"], summary["flaps"]) == (2, 1, 1)
    assert summary["connected_seconds"] == 3000.0
    narrow = json.loads(
        ok("device", "history", "laptop", "--period", "1h", "--flap-window", "10s", "--json")
    )
    assert narrow["sessions"] == []
    assert narrow["summary"]["flaps"] == 0
    whole = json.loads(ok("device", "history", "laptop", "--period", "10d", "--json"))
    assert whole["summary"]["sessions"] == 3
    text = ok("device", "history", "laptop")
    assert "2 sessions, 1 timeouts, 1 flaps" in text
    assert "availability 0.5% over 7d" in text  # 50 minutes of a week
    assert "0:20:00" in text
    assert "0:30:00" in text


def test_device_history_of_a_new_device_counts_from_its_enrollment(settings: Settings) -> None:
    make_org("acme", "100.64.0.0/24")
    device = enroll(settings, key_for("acme"), "laptop")

    async def connect(session: AsyncSession) -> datetime:
        row = await session.get(VirtualIPMapping, device["id"])
        assert row is not None
        session.add(
            ConnectionStatus(
                user_id=row.user_id,
                org_id=row.org_id,
                virtual_ip=row.virtual_ip,
                peer_id=row.peer_id,
                connection_id=uuid.uuid4(),
                status="connected",
                connected_at=row.created_at,
            )
        )
        await session.commit()
        return row.created_at

    enrolled = query(settings, connect)
    history = json.loads(ok("device", "history", "laptop", "--json"))
    assert history["summary"]["availability"] == 1.0
    text = ok("device", "history", "laptop")
    assert f"availability 100.0% since its enrollment at {enrolled.isoformat()[:19]}" in text


def test_device_paths_shows_what_the_agent_reported(settings: Settings) -> None:
    make_org("acme", "100.64.0.0/24")
    key = key_for("acme")
    laptop = enroll(settings, key, "laptop")
    enroll(settings, key, "server")
    assert ok("device", "paths", "laptop", "--json") == "[]\n"
    handshake = utcnow() - timedelta(seconds=90)

    async def report(session: AsyncSession) -> None:
        peers = {
            row.hostname: row for row in (await session.execute(select(VirtualIPMapping))).scalars()
        }
        session.add(
            PeerPath(
                device_id=laptop["id"],
                peer_id=peers["server"].peer_id,
                org_id=peers["server"].org_id,
                path="relay",
                endpoint="198.18.0.30:3478",
                last_handshake_at=handshake,
                reported_at=utcnow(),
            )
        )
        await session.commit()

    query(settings, report)
    (row,) = json.loads(ok("device", "paths", "laptop", "--org", "acme", "--json"))
    assert (row["hostname"], row["path"], row["endpoint"]) == (
        "server",
        "relay",
        "198.18.0.30:3478",
    )
    assert 90 <= row["handshake_age_seconds"] < 120
    text = ok("device", "paths", "laptop")
    assert "PEER" in text
    assert "server  relay  198.18.0.30:3478  0:01:3" in text


def test_device_history_by_a_name_shared_with_a_revoked_device_is_the_active_one(
    settings: Settings,
) -> None:
    make_org("acme", "100.64.0.0/24")
    key = key_for("acme")
    old = enroll(settings, key, "laptop")
    ok("device", "revoke", str(old["id"]))
    new = enroll(settings, key, "laptop")
    assert "several devices" in refused("device", "history", "laptop")  # which org's?
    history = json.loads(ok("device", "history", "laptop", "--org", "acme", "--json"))
    assert history["device_id"] == new["id"]
    ok("device", "revoke", str(new["id"]))
    message = refused("device", "history", "laptop", "--org", "acme")
    assert f"(ids {old['id']} (revoked), {new['id']} (revoked)); give the device id" in message
