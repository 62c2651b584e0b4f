"""The seed's own SQL and ORM snippets, run against the migrated schema.

Each query below is copied verbatim from the seed ("Usage suggestions" and "Useful queries"),
comments included. The seed's queries name ``org_id = 1``, so organizations get explicit ids.
The seed's ORM snippets are written with the real models, SQLAlchemy 2 style (async session,
``select()``) and ``datetime.now(UTC)`` instead of ``datetime.utcnow()``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import RowMapping, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.mail.models import GLOBAL_SMTP_UNIQUE_INDEX, SMTPSettings
from wiremesh.server.orgs.models import Organization
from wiremesh.server.presence.models import ConnectionState, ConnectionStatus
from wiremesh.server.users.models import User

# --- Usage suggestions -------------------------------------------------------------------------

SEED_INSERT_GLOBAL_SMTP = """\
INSERT INTO smtp_settings (org_id, smtp_server, smtp_port, smtp_username, smtp_password, from_email)
VALUES (NULL, 'smtp.gmail.com', 587, 'your-email@gmail.com', 'password', 'your-email@gmail.com');"""

SEED_INSERT_ORG_SMTP = """\
INSERT INTO smtp_settings (org_id, smtp_server, smtp_port, smtp_username, smtp_password, from_email)
VALUES (1, 'smtp.company.com', 587, 'noreply@company.com', 'password', 'noreply@company.com');"""

SEED_SMTP_CONFIG = """\
SELECT * FROM smtp_settings
WHERE (org_id = 1 OR org_id IS NULL) AND is_active = true
ORDER BY org_id DESC NULLS LAST  -- org config first, then global
LIMIT 1;"""

SEED_ACTIVE_CONNECTIONS = """\
SELECT * FROM connection_status
WHERE status = 'connected'
AND org_id = 1
ORDER BY last_seen_at DESC;"""

SEED_TIMING_OUT = """\
SELECT * FROM connection_status
WHERE status = 'connected'
AND last_pong_at < NOW() - INTERVAL '60 seconds';"""

# --- Useful queries ----------------------------------------------------------------------------

SEED_ALL_ACTIVE_CONNECTIONS = """\
SELECT cs.*, u.email, o.name as org_name
FROM connection_status cs
JOIN "user" u ON cs.user_id = u.id
JOIN organization o ON cs.org_id = o.id
WHERE cs.status = 'connected'
ORDER BY cs.last_seen_at DESC;"""

SEED_MAY_TIME_OUT = """\
SELECT cs.*, u.email
FROM connection_status cs
JOIN "user" u ON cs.user_id = u.id
WHERE cs.status = 'connected'
AND (cs.last_pong_at IS NULL OR cs.last_pong_at < NOW() - INTERVAL '60 seconds');"""

SEED_ORG_SMTP_CONFIG = """\
SELECT * FROM smtp_settings
WHERE (org_id = 1 OR org_id IS NULL)
AND is_active = true
ORDER BY org_id DESC NULLS LAST
LIMIT 1;"""

SEED_UNUSED_VIRTUAL_IPS = """\
SELECT v.*, u.email, o.name as org_name
FROM virtual_ip_mapping v
JOIN "user" u ON v.user_id = u.id
JOIN organization o ON v.org_id = o.id
WHERE v.last_seen_at IS NULL
OR v.last_seen_at < NOW() - INTERVAL '24 hours';"""

POSTGRESQL_SYNTAX = pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "sqlite",
            marks=pytest.mark.skip(
                reason="the seed's NOW() - INTERVAL '...' is PostgreSQL syntax; SQLite has "
                "neither NOW() nor INTERVAL"
            ),
        ),
        "postgresql",
    ],
    indirect=True,
)

Maker = async_sessionmaker[AsyncSession]


async def _run(session: AsyncSession, sql: str) -> Sequence[RowMapping]:
    return (await session.execute(text(sql))).mappings().all()


async def _two_orgs(maker: Maker) -> tuple[User, User]:
    """Organizations 1 ("org-one") and 2 ("org-two"); Alice in org 1, Bob in both."""
    async with maker() as session:
        session.add_all(
            [
                Organization(id=1, name="org-one", network_cidr="100.64.0.0/20"),
                Organization(id=2, name="org-two", network_cidr="100.64.16.0/20"),
            ]
        )
        alice = User(email="alice@one.example", name="Alice")
        bob = User(email="bob@two.example", name="Bob")
        session.add_all([alice, bob])
        await session.commit()
    return alice, bob


# --- One global SMTP row, one per organization -------------------------------------------------


async def _execute_alone(maker: Maker, sql: str) -> None:
    async with maker() as session:
        await session.execute(text(sql))
        await session.commit()


async def _smtp_rows(maker: Maker) -> list[tuple[int | None, str]]:
    async with maker() as session:
        rows = await session.execute(
            select(SMTPSettings.org_id, SMTPSettings.smtp_server).order_by(SMTPSettings.id)
        )
        return [(org_id, server) for org_id, server in rows]


async def test_the_seed_global_smtp_insert_succeeds_once_then_fails(
    sessionmaker: Maker,
) -> None:
    await _execute_alone(sessionmaker, SEED_INSERT_GLOBAL_SMTP)
    with pytest.raises(IntegrityError, match=GLOBAL_SMTP_UNIQUE_INDEX):
        await _execute_alone(sessionmaker, SEED_INSERT_GLOBAL_SMTP)

    # Through the ORM, and inactive, it is still a second global row.
    async with sessionmaker() as session:
        session.add(
            SMTPSettings(
                org_id=None,
                smtp_server="smtp.other.example",
                smtp_port=25,
                from_email="x@other.example",
                is_active=False,
            )
        )
        with pytest.raises(IntegrityError, match=GLOBAL_SMTP_UNIQUE_INDEX):
            await session.commit()

    async with sessionmaker() as session:
        (row,) = (await session.scalars(select(SMTPSettings))).all()
    assert (row.org_id, row.smtp_server, row.smtp_port) == (None, "smtp.gmail.com", 587)
    assert (row.smtp_username, row.smtp_password) == ("your-email@gmail.com", "password")
    assert row.from_email == "your-email@gmail.com"
    # The seed's INSERT leaves these to the server defaults.
    assert row.use_tls is True
    assert row.is_active is True
    assert row.created_at.tzinfo is UTC
    assert row.updated_at.tzinfo is UTC


async def test_a_second_row_for_the_same_org_fails(sessionmaker: Maker) -> None:
    await _two_orgs(sessionmaker)
    await _execute_alone(sessionmaker, SEED_INSERT_ORG_SMTP)
    with pytest.raises(IntegrityError):
        await _execute_alone(sessionmaker, SEED_INSERT_ORG_SMTP)
    assert await _smtp_rows(sessionmaker) == [(1, "smtp.company.com")]


async def test_one_row_per_org_and_one_global_all_succeed(sessionmaker: Maker) -> None:
    await _two_orgs(sessionmaker)
    await _execute_alone(sessionmaker, SEED_INSERT_ORG_SMTP)
    async with sessionmaker() as session:
        session.add(
            SMTPSettings(
                org_id=2, smtp_server="smtp.two.example", smtp_port=465, from_email="a@two.example"
            )
        )
        await session.commit()
    await _execute_alone(sessionmaker, SEED_INSERT_GLOBAL_SMTP)
    assert await _smtp_rows(sessionmaker) == [
        (1, "smtp.company.com"),
        (2, "smtp.two.example"),
        (None, "smtp.gmail.com"),
    ]


# --- SMTP configuration: the organization's first, the global one as fallback ------------------


@pytest.mark.parametrize(
    ("org_row", "global_row", "expected"),
    [
        ("active", "active", "org"),
        ("missing", "active", "global"),
        ("inactive", "active", "global"),
        ("active", "missing", "org"),
        ("active", "inactive", "org"),
        ("missing", "inactive", None),
        ("inactive", "inactive", None),
        ("missing", "missing", None),
    ],
)
async def test_seed_smtp_queries_pick_org_then_global(
    sessionmaker: Maker, org_row: str, global_row: str, expected: str | None
) -> None:
    await _two_orgs(sessionmaker)
    async with sessionmaker() as session:
        # Another organization's active row must never be picked for org 1.
        session.add(
            SMTPSettings(
                org_id=2, smtp_server="smtp.two.example", smtp_port=465, from_email="a@two.example"
            )
        )
        if org_row != "missing":
            await session.execute(text(SEED_INSERT_ORG_SMTP))
        if global_row != "missing":
            await session.execute(text(SEED_INSERT_GLOBAL_SMTP))
        if org_row == "inactive":
            await session.execute(
                update(SMTPSettings).where(SMTPSettings.org_id == 1).values(is_active=False)
            )
        if global_row == "inactive":
            await session.execute(
                update(SMTPSettings).where(SMTPSettings.org_id.is_(None)).values(is_active=False)
            )
        await session.commit()

    async with sessionmaker() as session:
        ids = {
            org_id: row_id
            for row_id, org_id in await session.execute(
                select(SMTPSettings.id, SMTPSettings.org_id)
            )
        }
        for query in (SEED_SMTP_CONFIG, SEED_ORG_SMTP_CONFIG):
            rows = await _run(session, query)
            if expected is None:
                assert rows == [], query
                continue
            (row,) = rows
            org_id = 1 if expected == "org" else None
            assert row["id"] == ids[org_id], query
            assert row["org_id"] == org_id, query
            assert row["smtp_server"] == (
                "smtp.company.com" if expected == "org" else "smtp.gmail.com"
            ), query


# --- Connection status ---------------------------------------------------------------------


async def _connections(maker: Maker, now: datetime) -> dict[str, int]:
    """Connections in several states; returns their ids by label."""
    alice, bob = await _two_orgs(maker)

    def ago(seconds: float | None) -> datetime | None:
        return None if seconds is None else now - timedelta(seconds=seconds)

    # label: (user, org, status, seconds since last pong, seconds since last seen)
    specs: dict[str, tuple[User, int, str, float | None, float | None]] = {
        "a": (alice, 1, "connected", 30, 30),
        "b": (alice, 1, "connected", 5, 5),
        "c": (bob, 1, "connected", None, None),  # just connected: no pong yet
        "d": (alice, 1, "disconnected", 120, 1),
        "e": (alice, 1, "timeout", 200, 200),
        "f": (alice, 1, "connected", 120, 120),  # silent for two minutes
        "g": (bob, 2, "connected", 90, 90),
        "h": (bob, 2, "connected", 3, 3),
    }
    rows: dict[str, ConnectionStatus] = {}
    async with maker() as session:
        for number, (label, (user, org_id, status, pong, seen)) in enumerate(specs.items()):
            rows[label] = ConnectionStatus(
                user_id=user.id,
                org_id=org_id,
                virtual_ip=f"100.64.{org_id * 16 - 16}.{number + 1}",
                peer_id=f"peer-{label}",
                connection_id=uuid.uuid4(),
                status=status,
                connected_at=now - timedelta(seconds=300),
                disconnected_at=ago(1) if status != "connected" else None,
                last_ping_at=ago(pong),
                last_pong_at=ago(pong),
                last_seen_at=ago(seen),
            )
            session.add(rows[label])
        await session.commit()
    return {label: row.id for label, row in rows.items()}


def _labels(rows: Sequence[RowMapping], ids: dict[str, int]) -> list[str]:
    by_id = {row_id: label for label, row_id in ids.items()}
    return [by_id[row["id"]] for row in rows]


async def test_seed_active_connections_of_org_1(sessionmaker: Maker, backend: str) -> None:
    ids = await _connections(sessionmaker, datetime.now(UTC))
    async with sessionmaker() as session:
        rows = await _run(session, SEED_ACTIVE_CONNECTIONS)
    # DESC puts NULL first on PostgreSQL and last on SQLite: "c" has never been seen.
    expected = ["c", "b", "a", "f"] if backend == "postgresql" else ["b", "a", "f", "c"]
    assert _labels(rows, ids) == expected
    assert {row["status"] for row in rows} == {"connected"}
    assert {row["org_id"] for row in rows} == {1}


async def test_seed_all_active_connections_with_user_and_org(
    sessionmaker: Maker, backend: str
) -> None:
    ids = await _connections(sessionmaker, datetime.now(UTC))
    async with sessionmaker() as session:
        rows = await _run(session, SEED_ALL_ACTIVE_CONNECTIONS)
    by_seen = ["h", "b", "a", "g", "f"]
    expected = ["c", *by_seen] if backend == "postgresql" else [*by_seen, "c"]
    assert _labels(rows, ids) == expected
    people = {
        label: (row["email"], row["org_name"]) for label, row in zip(expected, rows, strict=True)
    }
    assert people == {
        "a": ("alice@one.example", "org-one"),
        "b": ("alice@one.example", "org-one"),
        "c": ("bob@two.example", "org-one"),
        "f": ("alice@one.example", "org-one"),
        "g": ("bob@two.example", "org-two"),
        "h": ("bob@two.example", "org-two"),
    }


@POSTGRESQL_SYNTAX
async def test_seed_timing_out_connections(sessionmaker: Maker) -> None:
    ids = await _connections(sessionmaker, datetime.now(UTC))
    async with sessionmaker() as session:
        rows = await _run(session, SEED_TIMING_OUT)
    # "c" has no pong at all: this query leaves it out, the next one does not.
    assert sorted(_labels(rows, ids)) == ["f", "g"]


@POSTGRESQL_SYNTAX
async def test_seed_connections_that_may_time_out(sessionmaker: Maker) -> None:
    ids = await _connections(sessionmaker, datetime.now(UTC))
    async with sessionmaker() as session:
        rows = await _run(session, SEED_MAY_TIME_OUT)
    emails = {label: row["email"] for label, row in zip(_labels(rows, ids), rows, strict=True)}
    assert emails == {
        "c": "bob@two.example",
        "f": "alice@one.example",
        "g": "bob@two.example",
    }


# --- Virtual IP mapping ----------------------------------------------------------------------


def _mapping(user: User, org_id: int, number: int, last_seen_at: datetime | None) -> Any:
    return VirtualIPMapping(
        org_id=org_id,
        user_id=user.id,
        peer_id=f"peer-{number}",
        virtual_ip=f"100.64.{org_id * 16 - 16}.{number}",
        public_key=None,
        hostname=f"host-{number}",
        credential_lookup=f"cred{number:012d}",
        credential_hash="0" * 64,
        last_seen_at=last_seen_at,
    )


@POSTGRESQL_SYNTAX
async def test_seed_virtual_ips_unused_for_24_hours(sessionmaker: Maker) -> None:
    alice, bob = await _two_orgs(sessionmaker)
    now = datetime.now(UTC)
    hours = timedelta(hours=1)
    specs: dict[str, tuple[User, int, datetime | None]] = {
        "never": (alice, 1, None),
        "25h": (alice, 1, now - 25 * hours),
        "23h": (alice, 1, now - 23 * hours),
        "now": (alice, 1, now),
        "org2-never": (bob, 2, None),
        "org2-2d": (bob, 2, now - 48 * hours),
        "org2-1h": (bob, 2, now - hours),
    }
    async with sessionmaker() as session:
        mappings = {
            label: _mapping(user, org_id, number + 1, seen)
            for number, (label, (user, org_id, seen)) in enumerate(specs.items())
        }
        session.add_all(mappings.values())
        await session.commit()
    ids = {label: mapping.id for label, mapping in mappings.items()}

    async with sessionmaker() as session:
        rows = await _run(session, SEED_UNUSED_VIRTUAL_IPS)
    found = {
        label: (row["email"], row["org_name"])
        for label, row in zip(_labels(rows, ids), rows, strict=True)
    }
    assert found == {
        "never": ("alice@one.example", "org-one"),
        "25h": ("alice@one.example", "org-one"),
        "org2-never": ("bob@two.example", "org-two"),
        "org2-2d": ("bob@two.example", "org-two"),
    }


# --- The seed's ORM snippets with the real models --------------------------------------------


async def test_seed_connection_lifecycle_with_the_models(sessionmaker: Maker) -> None:
    alice, _bob = await _two_orgs(sessionmaker)
    async with sessionmaker() as session:
        session.add_all([_mapping(alice, 1, 1, None), _mapping(alice, 2, 2, None)])
        await session.commit()

    user, org_id = alice, 1
    virtual_ip, peer_id = "100.64.0.1", "peer-1"
    connection_id = uuid.uuid4()
    public_ip, public_port = "203.0.113.7", 51820

    # Agent connects.
    before = datetime.now(UTC)
    async with sessionmaker() as db:
        connection = ConnectionStatus(
            user_id=user.id,
            org_id=org_id,
            virtual_ip=virtual_ip,
            peer_id=peer_id,
            connection_id=connection_id,
            public_ip=public_ip,
            public_port=public_port,
            status="connected",
        )
        db.add(connection)
        await db.commit()
    after = datetime.now(UTC)

    async with sessionmaker() as db:
        row = await db.get_one(ConnectionStatus, connection.id)
        assert row.status == ConnectionState.CONNECTED
        assert (row.user_id, row.org_id, row.virtual_ip, row.peer_id) == (
            user.id,
            org_id,
            virtual_ip,
            peer_id,
        )
        assert (row.connection_id, row.public_ip, row.public_port) == (
            connection_id,
            public_ip,
            public_port,
        )
        assert before <= row.connected_at <= after
        assert row.connected_at.tzinfo is UTC
        assert row.disconnected_at is None
        assert (row.last_ping_at, row.last_pong_at, row.last_seen_at) == (None, None, None)
        assert [r["id"] for r in await _run(db, SEED_ACTIVE_CONNECTIONS)] == [connection.id]

    # On pong.
    async with sessionmaker() as db:
        connection = await db.get_one(ConnectionStatus, connection.id)
        pong_at = datetime.now(UTC)
        connection.last_pong_at = pong_at
        connection.last_seen_at = pong_at
        await db.commit()

    # Update last_seen_at of the virtual IP mapping while the connection is active.
    async with sessionmaker() as db:
        mapping = (
            await db.scalars(
                select(VirtualIPMapping).where(
                    VirtualIPMapping.user_id == user.id,
                    VirtualIPMapping.org_id == org_id,
                )
            )
        ).first()
        assert mapping is not None
        mapping.last_seen_at = datetime.now(UTC)
        await db.commit()
        mapping_seen_at = mapping.last_seen_at

    # On disconnect.
    async with sessionmaker() as db:
        connection = await db.get_one(ConnectionStatus, connection.id)
        connection.status = "disconnected"
        disconnected_at = datetime.now(UTC)
        connection.disconnected_at = disconnected_at
        await db.commit()

    async with sessionmaker() as db:
        row = await db.get_one(ConnectionStatus, connection.id)
        assert row.status == ConnectionState.DISCONNECTED
        assert row.last_pong_at == pong_at
        assert row.last_seen_at == pong_at
        assert row.disconnected_at == disconnected_at
        assert row.disconnected_at.tzinfo is UTC
        assert await _run(db, SEED_ACTIVE_CONNECTIONS) == []
        seen = {
            mapping_org_id: last_seen_at
            for mapping_org_id, last_seen_at in await db.execute(
                select(VirtualIPMapping.org_id, VirtualIPMapping.last_seen_at)
            )
        }
        # Only the mapping of this user in this organization was touched.
        assert seen == {1: mapping_seen_at, 2: None}
        assert await db.scalar(select(func.count()).select_from(ConnectionStatus)) == 1
