"""`wiremesh relay add|list|remove` against a test's database (both databases)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, ok, query, refused
from tests.protocol.helpers import wg_key
from wiremesh.server.auth.secrets import hash_secret
from wiremesh.server.config import Settings
from wiremesh.server.events.models import MeshEvent
from wiremesh.server.paths.models import Relay, RelayCredential

pytestmark = pytest.mark.usefixtures("cli_database")


def credentials(settings: Settings) -> list[tuple[str, str]]:
    async def work(session: AsyncSession) -> list[tuple[str, str]]:
        rows = await session.execute(
            select(RelayCredential.name, RelayCredential.secret_hash).order_by(RelayCredential.name)
        )
        return [(name, secret_hash) for name, secret_hash in rows]

    return query(settings, work)


def relay_events(settings: Settings) -> list[tuple[str, bool]]:
    async def work(session: AsyncSession) -> list[tuple[str, bool]]:
        rows = await session.execute(
            select(MeshEvent.payload).where(MeshEvent.kind == "relay_changed")
        )
        return [(payload["name"], payload["online"]) for payload in rows.scalars()]

    return query(settings, work)


async def relay_online(session: AsyncSession) -> None:
    """A relay ``r1`` that checked in (with the global token, or its own)."""
    session.add(Relay(name="r1", public_key=wg_key(1), endpoint="198.51.100.7:3478", online=True))
    await session.commit()


def test_add_prints_the_credential_once_and_stores_its_hash(settings: Settings) -> None:
    result = invoke("relay", "add", "r1")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("wmr_")
    assert "\n" not in token
    assert "shown only this once" in result.stderr
    assert credentials(settings) == [("r1", hash_secret(token))]

    listed = ok("relay", "list")
    assert listed.splitlines()[1].split()[:3] == ["r1", "own", "no"]
    assert token not in listed
    assert token not in ok("relay", "list", "--json")


def test_add_refuses_a_bad_name_or_a_second_credential(settings: Settings) -> None:
    for name in ("R1", "r" * 33, "r_1", "r.1"):
        assert "validation_error" in refused("relay", "add", name)
    assert "validation_error" in refused("relay", "add", "--", "-r1")
    ok("relay", "add", "r1")
    assert "relay_credential_exists" in refused("relay", "add", "r1")
    assert [name for name, _hash in credentials(settings)] == ["r1"]


def test_list_shows_relays_on_their_own_credential_and_on_the_global_token(
    settings: Settings,
) -> None:
    assert json.loads(ok("relay", "list", "--json")) == []
    ok("relay", "add", "r2")

    query(settings, relay_online)
    listed = json.loads(ok("relay", "list", "--json"))
    assert [(row["name"], row["credential"], row["online"], row["endpoint"]) for row in listed] == [
        ("r1", "global", True, "198.51.100.7:3478"),
        ("r2", "own", False, None),
    ]
    assert [(row["created_at"] is None, row["last_seen_at"] is None) for row in listed] == [
        (True, False),
        (False, True),
    ]
    table = ok("relay", "list")
    assert table.splitlines()[0].split() == [
        "NAME",
        "CREDENTIAL",
        "ONLINE",
        "ENDPOINT",
        "LAST_SEEN_AT",
        "CREATED_AT",
    ]


def test_remove_takes_an_online_relay_offline_with_its_event(settings: Settings) -> None:
    ok("relay", "add", "r1")

    query(settings, relay_online)
    assert "Removed relay r1." in ok("relay", "remove", "r1")
    assert credentials(settings) == []
    assert relay_events(settings) == [("r1", False)]
    assert json.loads(ok("relay", "list", "--json")) == []
    assert "not_found" in refused("relay", "remove", "r1")
    assert relay_events(settings) == [("r1", False)]
