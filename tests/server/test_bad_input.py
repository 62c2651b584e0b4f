"""Bad input is refused with a 4xx, the right code and a message; never a 500, never a write."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.auth.service import create_token
from wiremesh.server.db.base import utcnow
from wiremesh.server.db.models import Base
from wiremesh.server.orgs.models import OrgRole

LONG = "x" * 10_000


@dataclass
class World:
    tokens: dict[str, str]
    org_id: int
    other_org_id: int
    member_id: int


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    code: str
    caller: str = "admin"
    json: Any = None
    content: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


CASES = [
    # --- users ---
    Case(
        "email-invalid",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "not-an-email", "name": "N"},
    ),
    Case(
        "email-no-domain-dot",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "a@localhost", "name": "N"},
    ),
    Case(
        "email-nul",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "a\u0000b@example.com", "name": "N"},
    ),
    Case(
        "email-oversize",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "a" * 400 + "@example.com", "name": "N"},
    ),
    Case(
        "email-wrong-type",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": 12345, "name": "N"},
    ),
    Case(
        "email-duplicate-other-case",
        "POST",
        "/users",
        409,
        "email_taken",
        json={"email": "TAKEN@Example.com", "name": "N"},
    ),
    Case(
        "name-oversize",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "new@example.com", "name": LONG},
    ),
    Case(
        "name-blank",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "new@example.com", "name": "   "},
    ),
    Case(
        "name-nul",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "new@example.com", "name": "a\u0000b"},
    ),
    Case(
        "name-wrong-type",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "new@example.com", "name": ["a"]},
    ),
    Case(
        "user-unknown-field",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "new@example.com", "name": "N", "is_admin": True},
    ),
    Case(
        "user-admin-flag-wrong-type",
        "POST",
        "/users",
        422,
        "validation_error",
        json={"email": "new@example.com", "name": "N", "is_server_admin": "maybe"},
    ),
    Case(
        "user-create-not-admin",
        "POST",
        "/users",
        403,
        "forbidden",
        caller="user",
        json={"email": "new@example.com", "name": "N"},
    ),
    Case("user-unknown-id", "GET", "/users/999999", 404, "not_found"),
    Case("user-id-overflow", "GET", "/users/99999999999999999999", 422, "validation_error"),
    Case("user-id-not-int", "GET", "/users/abc", 422, "validation_error"),
    Case("user-id-zero", "GET", "/users/0", 422, "validation_error"),
    Case("user-delete-unknown", "DELETE", "/users/999999", 404, "not_found"),
    Case("user-delete-self", "DELETE", "/users/{admin_id}", 409, "cannot_delete_self"),
    Case("user-delete-sole-owner", "DELETE", "/users/{member_id}", 409, "last_owner"),
    Case("users-limit-too-big", "GET", "/users?limit=1000000", 422, "validation_error"),
    # --- orgs ---
    Case("org-name-duplicate", "POST", "/orgs", 409, "org_name_taken", json={"name": "acme"}),
    Case(
        "org-name-duplicate-other-case",
        "POST",
        "/orgs",
        409,
        "org_name_taken",
        json={"name": " ACME "},
    ),
    Case("org-name-oversize", "POST", "/orgs", 422, "validation_error", json={"name": LONG}),
    Case(
        "org-name-not-a-slug", "POST", "/orgs", 422, "validation_error", json={"name": "bad name!"}
    ),
    Case(
        "org-name-leading-digit", "POST", "/orgs", 422, "validation_error", json={"name": "9lives"}
    ),
    Case("org-name-trailing-hyphen", "POST", "/orgs", 422, "validation_error", json={"name": "a-"}),
    Case("org-name-empty", "POST", "/orgs", 422, "validation_error", json={"name": ""}),
    Case("org-name-wrong-type", "POST", "/orgs", 422, "validation_error", json={"name": 7}),
    Case("org-name-missing", "POST", "/orgs", 422, "validation_error", json={}),
    Case(
        "network-garbage",
        "POST",
        "/orgs",
        422,
        "invalid_network",
        json={"name": "new", "network_cidr": "banana"},
    ),
    Case(
        "network-host-bits",
        "POST",
        "/orgs",
        422,
        "invalid_network",
        json={"name": "new", "network_cidr": "100.64.64.1/24"},
    ),
    Case(
        "network-ipv6",
        "POST",
        "/orgs",
        422,
        "invalid_network",
        json={"name": "new", "network_cidr": "fd00::/64"},
    ),
    Case(
        "network-prefix-too-long",
        "POST",
        "/orgs",
        422,
        "invalid_network",
        json={"name": "new", "network_cidr": "100.64.64.0/31"},
    ),
    Case(
        "network-no-prefix",
        "POST",
        "/orgs",
        422,
        "invalid_network",
        json={"name": "new", "network_cidr": "100.64.64.0"},
    ),
    Case(
        "network-outside-pool",
        "POST",
        "/orgs",
        422,
        "network_outside_pool",
        json={"name": "new", "network_cidr": "10.0.0.0/24"},
    ),
    Case(
        "network-overlap",
        "POST",
        "/orgs",
        409,
        "network_overlap",
        json={"name": "new", "network_cidr": "100.64.0.128/25"},
    ),
    Case(
        "network-oversize",
        "POST",
        "/orgs",
        422,
        "validation_error",
        json={"name": "new", "network_cidr": LONG},
    ),
    Case(
        "org-owner-unknown",
        "POST",
        "/orgs",
        404,
        "not_found",
        json={"name": "new", "owner_user_id": 999999},
    ),
    Case(
        "org-owner-overflow",
        "POST",
        "/orgs",
        422,
        "validation_error",
        json={"name": "new", "owner_user_id": 2**40},
    ),
    Case(
        "org-create-not-admin",
        "POST",
        "/orgs",
        403,
        "forbidden",
        caller="user",
        json={"name": "new"},
    ),
    Case("org-unknown", "GET", "/orgs/999999", 404, "not_found"),
    Case("org-id-overflow", "GET", "/orgs/99999999999999999999", 422, "validation_error"),
    Case(
        "org-rename-duplicate",
        "PATCH",
        "/orgs/{org_id}",
        409,
        "org_name_taken",
        json={"name": "other"},
    ),
    Case(
        "org-rename-invalid",
        "PATCH",
        "/orgs/{org_id}",
        422,
        "validation_error",
        json={"name": "Not Valid"},
    ),
    Case("org-delete-unknown", "DELETE", "/orgs/999999", 404, "not_found"),
    # --- members ---
    Case(
        "member-unknown-email",
        "POST",
        "/orgs/{org_id}/members",
        404,
        "not_found",
        json={"email": "nobody@example.com"},
    ),
    Case(
        "member-unknown-id",
        "POST",
        "/orgs/{org_id}/members",
        404,
        "not_found",
        json={"user_id": 999999},
    ),
    Case(
        "member-bad-role",
        "POST",
        "/orgs/{org_id}/members",
        422,
        "validation_error",
        json={"email": "taken@example.com", "role": "king"},
    ),
    Case(
        "member-both-ids",
        "POST",
        "/orgs/{org_id}/members",
        422,
        "validation_error",
        json={"email": "taken@example.com", "user_id": 1},
    ),
    Case(
        "member-neither-id",
        "POST",
        "/orgs/{org_id}/members",
        422,
        "validation_error",
        json={"role": "member"},
    ),
    Case(
        "member-already",
        "POST",
        "/orgs/{org_id}/members",
        409,
        "already_member",
        json={"user_id": "{member_id}", "role": "member"},
    ),
    Case(
        "member-change-unknown",
        "PATCH",
        "/orgs/{org_id}/members/999999",
        404,
        "not_found",
        json={"role": "admin"},
    ),
    Case(
        "member-demote-last-owner",
        "PATCH",
        "/orgs/{org_id}/members/{member_id}",
        409,
        "last_owner",
        json={"role": "member"},
    ),
    Case(
        "member-remove-last-owner",
        "DELETE",
        "/orgs/{org_id}/members/{member_id}",
        409,
        "last_owner",
    ),
    # --- tokens ---
    Case("token-name-oversize", "POST", "/tokens", 422, "validation_error", json={"name": LONG}),
    Case("token-name-newline", "POST", "/tokens", 422, "validation_error", json={"name": "a\nb"}),
    Case(
        "token-expiry-zero",
        "POST",
        "/tokens",
        422,
        "validation_error",
        json={"name": "t", "expires_in_days": 0},
    ),
    Case(
        "token-expiry-huge",
        "POST",
        "/tokens",
        422,
        "validation_error",
        json={"name": "t", "expires_in_days": 10**9},
    ),
    Case(
        "token-expiry-wrong-type",
        "POST",
        "/tokens",
        422,
        "validation_error",
        json={"name": "t", "expires_in_days": "soon"},
    ),
    Case("token-revoke-unknown", "DELETE", "/tokens/999999", 404, "not_found"),
    Case(
        "token-revoke-someone-elses",
        "DELETE",
        "/tokens/{admin_token_id}",
        404,
        "not_found",
        caller="user",
    ),
    # --- bodies ---
    Case(
        "malformed-json",
        "POST",
        "/users",
        400,
        "malformed_json",
        content='{"email": ',
        headers={"content-type": "application/json"},
    ),
    Case("json-not-an-object", "POST", "/users", 422, "validation_error", json=["a", "b"]),
    Case(
        "text-content-type",
        "POST",
        "/users",
        415,
        "unsupported_media_type",
        content='{"email": "new@example.com", "name": "N"}',
        headers={"content-type": "text/plain"},
    ),
    Case(
        "form-content-type",
        "POST",
        "/orgs",
        415,
        "unsupported_media_type",
        content="name=new",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    Case("no-body", "POST", "/tokens", 422, "validation_error"),
    # --- credentials ---
    Case("token-missing", "GET", "/users/me", 401, "unauthenticated", caller="none"),
    Case("token-garbage", "GET", "/users/me", 401, "invalid_token", caller="garbage"),
    Case("token-unknown", "GET", "/users/me", 401, "invalid_token", caller="unknown"),
    Case("token-tampered", "GET", "/users/me", 401, "invalid_token", caller="tampered"),
    Case("token-revoked", "GET", "/users/me", 401, "invalid_token", caller="revoked"),
    Case("token-expired", "GET", "/users/me", 401, "invalid_token", caller="expired"),
    Case("token-wrong-scheme", "GET", "/users/me", 401, "unauthenticated", caller="basic"),
    Case(
        "token-revoked-write",
        "POST",
        "/tokens",
        401,
        "invalid_token",
        caller="revoked",
        json={"name": "t"},
    ),
]


async def make_world(session: AsyncSession) -> World:
    admin = await make_user(session, server_admin=True)
    owner = await make_user(session, email="taken@example.com")
    org = await make_org(session, name="acme", network_cidr="100.64.0.0/24")
    other = await make_org(session, name="other", network_cidr="100.64.1.0/24")
    await make_member(session, org, owner, OrgRole.OWNER)
    await make_member(session, other, owner, OrgRole.OWNER)
    admin_token, admin_plain = await create_token(session, admin, "admin")
    revoked, revoked_plain = await create_token(session, owner, "revoked")
    revoked.revoked_at = utcnow()
    _expired, expired_plain = await create_token(
        session, owner, "expired", expires_at=utcnow() - timedelta(seconds=1)
    )
    user_plain = await make_token(session, owner)
    await session.commit()
    kind, lookup, _secret = admin_plain.split("_", 2)
    return World(
        tokens={
            "admin": admin_plain,
            "user": user_plain,
            "revoked": revoked_plain,
            "expired": expired_plain,
            "garbage": "nonsense",
            "unknown": f"{kind}_{'0' * len(lookup)}_{'A' * 43}",
            "tampered": admin_plain[:-4] + ("AAAA" if not admin_plain.endswith("AAAA") else "BBBB"),
            "admin_id": str(admin.id),
            "admin_token_id": str(admin_token.id),
        },
        org_id=org.id,
        other_org_id=other.id,
        member_id=owner.id,
    )


async def table_contents(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Every row of every table (token last-use times aside, and the replica leases, which
    the server renews in the background whatever the requests do)."""
    contents: dict[str, Any] = {}
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            if table.name == "server_replica":
                continue
            columns = [column for column in table.columns if column.name != "last_used_at"]
            rows = (await session.execute(select(*columns))).all()
            contents[table.name] = sorted(repr(tuple(row)) for row in rows)
    return contents


def _fill(value: Any, world: World) -> Any:
    if isinstance(value, str):
        filled = value.format(
            org_id=world.org_id,
            member_id=world.member_id,
            admin_id=world.tokens["admin_id"],
            admin_token_id=world.tokens["admin_token_id"],
        )
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, dict):
        return {key: _fill(item, world) for key, item in value.items()}
    return value


def _headers(case: Case, world: World) -> dict[str, str]:
    headers = dict(case.headers)
    if case.caller == "basic":
        headers["Authorization"] = "Basic YWRtaW46YWRtaW4="
    elif case.caller != "none":
        headers.update(auth(world.tokens[case.caller]))
    return headers


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input_is_refused_cleanly(
    case: Case,
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await make_world(session)
    before = await table_contents(sessionmaker)
    path = "/api/v1" + str(_fill(case.path, world))
    kwargs: dict[str, Any] = {"headers": _headers(case, world)}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.json is not None:
        kwargs["json"] = _fill(case.json, world)
    response = await client.request(case.method, path, **kwargs)

    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert error["code"] == case.code
    assert error["message"]
    assert await table_contents(sessionmaker) == before


def test_every_case_id_is_unique() -> None:
    assert len({case.id for case in CASES}) == len(CASES)
