"""`wiremesh org` and `wiremesh member`."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, ok, query
from wiremesh.server.config import Settings
from wiremesh.server.orgs.models import Membership, Organization

pytestmark = pytest.mark.usefixtures("cli_database")


def org_names(settings: Settings) -> list[str]:
    async def names(session: AsyncSession) -> list[str]:
        rows = await session.execute(select(Organization.name).order_by(Organization.id))
        return list(rows.scalars())

    return query(settings, names)


def test_create_and_list(settings: Settings) -> None:
    created = json.loads(ok("org", "create", "Acme", "--json"))
    assert (created["name"], created["network_cidr"]) == ("acme", "100.64.0.0/20")
    ok("org", "create", "beta", "--network", "100.64.128.0/24")
    table = ok("org", "list")
    assert table.splitlines()[0].split() == ["ID", "NAME", "NETWORK_CIDR", "CREATED_AT"]
    assert "beta" in table
    assert "100.64.128.0/24" in table
    listed = json.loads(ok("org", "list", "--json"))
    assert [org["name"] for org in listed] == ["acme", "beta"]


def test_create_refusals_exit_1_with_the_reason(settings: Settings) -> None:
    ok("org", "create", "acme", "--network", "100.64.0.0/16")
    for args, words in [
        (("org", "create", "acme"), "org_name_taken"),
        (("org", "create", "Not Valid"), "lowercase letters"),
        (("org", "create", "b", "--network", "100.64.1.0/24"), "network_overlap"),
        (("org", "create", "c", "--network", "10.0.0.0/8"), "network_outside_pool"),
        (("org", "create", "d", "--owner", "nobody@example.com"), "user not found"),
    ]:
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert words in result.stderr
        assert "Traceback" not in result.output
    assert org_names(settings) == ["acme"]


def test_create_with_an_owner(settings: Settings) -> None:
    ok("user", "create", "--email", "ann@example.com", "--name", "Ann")
    ok("org", "create", "acme", "--owner", "ann@example.com")
    members = json.loads(ok("member", "list", "--org", "acme", "--json"))
    assert [(m["email"], m["role"]) for m in members] == [("ann@example.com", "owner")]


def test_delete_by_name_or_id(settings: Settings) -> None:
    first = json.loads(ok("org", "create", "one", "--json"))
    ok("org", "create", "two")
    ok("org", "delete", str(first["id"]), "--yes")
    assert org_names(settings) == ["two"]
    assert "Deleted organization two" in ok("org", "delete", "two", "--yes")
    assert org_names(settings) == []


def test_delete_asks_first(settings: Settings) -> None:
    ok("org", "create", "keep")
    declined = invoke("org", "delete", "keep", input="n\n")
    assert declined.exit_code == 1
    assert org_names(settings) == ["keep"]
    ok("org", "delete", "keep", input="y\n")
    assert org_names(settings) == []


def test_delete_unknown_org() -> None:
    result = invoke("org", "delete", "ghost", "--yes")
    assert result.exit_code == 1
    assert "organization not found" in result.stderr


def test_members_add_list_remove(settings: Settings) -> None:
    ok("org", "create", "acme")
    ok("user", "create", "--email", "owner@example.com", "--name", "Owner")
    ok("user", "create", "--email", "ann@example.com", "--name", "Ann")
    ok("member", "add", "--org", "acme", "--user", "owner@example.com", "--role", "owner")
    added = json.loads(
        ok(
            "member",
            "add",
            "--org",
            "acme",
            "--user",
            "ANN@example.com",
            "--role",
            "admin",
            "--json",
        )
    )
    assert (added["email"], added["role"]) == ("ann@example.com", "admin")
    table = ok("member", "list", "--org", "acme")
    assert "owner@example.com" in table
    assert "ann@example.com" in table

    twice = invoke("member", "add", "--org", "acme", "--user", "ann@example.com")
    assert twice.exit_code == 1
    assert "already_member" in twice.stderr
    last = invoke("member", "remove", "--org", "acme", "--user", "owner@example.com")
    assert last.exit_code == 1
    assert "last_owner" in last.stderr
    assert "Removed ann@example.com" in ok(
        "member", "remove", "--org", "acme", "--user", "ann@example.com"
    )

    async def member_count(session: AsyncSession) -> int:
        return len((await session.execute(select(Membership))).all())

    assert query(settings, member_count) == 1


def test_member_refusals() -> None:
    ok("org", "create", "acme")
    unknown_user = invoke("member", "add", "--org", "acme", "--user", "nobody@example.com")
    assert unknown_user.exit_code == 1
    assert "user not found" in unknown_user.stderr
    unknown_org = invoke("member", "add", "--org", "ghost", "--user", "nobody@example.com")
    assert unknown_org.exit_code == 1
    bad_role = invoke("member", "add", "--org", "acme", "--user", "a@example.com", "--role", "king")
    assert bad_role.exit_code == 2
    not_member = invoke("member", "remove", "--org", "acme", "--user", "nobody@example.com")
    assert not_member.exit_code == 1
