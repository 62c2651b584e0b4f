"""Orgs and members over HTTP: who may do what, and what the answers look like."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.users.models import User

API = "/api/v1"


@dataclass
class Org:
    id: int
    admin: dict[str, str]
    owner: dict[str, str]
    org_admin: dict[str, str]
    member: dict[str, str]
    outsider: dict[str, str]
    owner_id: int
    org_admin_id: int
    member_id: int
    outsider_id: int
    outsider_email: str
    admin_id: int


async def make_org_with_people(session: AsyncSession) -> Org:
    admin = await make_user(session, server_admin=True)
    org = await make_org(session, name="acme", network_cidr="100.64.0.0/20")
    people = {}
    for role in OrgRole:
        user = await make_user(session)
        await make_member(session, org, user, role)
        people[role] = user
    outsider = await make_user(session)
    result = Org(
        id=org.id,
        admin=auth(await make_token(session, admin)),
        owner=auth(await make_token(session, people[OrgRole.OWNER])),
        org_admin=auth(await make_token(session, people[OrgRole.ADMIN])),
        member=auth(await make_token(session, people[OrgRole.MEMBER])),
        outsider=auth(await make_token(session, outsider)),
        owner_id=people[OrgRole.OWNER].id,
        org_admin_id=people[OrgRole.ADMIN].id,
        member_id=people[OrgRole.MEMBER].id,
        outsider_id=outsider.id,
        outsider_email=outsider.email,
        admin_id=admin.id,
    )
    await session.commit()
    return result


async def test_server_admin_creates_orgs_with_allocated_networks(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    org = await make_org_with_people(session)
    response = await client.post(f"{API}/orgs", json={"name": "Beta"}, headers=org.admin)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "beta"
    assert body["network_cidr"] == "100.64.16.0/20"
    assert body["role"] is None, "the server administrator is not a member of it"
    assert set(body) == {"id", "name", "network_cidr", "created_at", "role"}
    mine = await client.post(
        f"{API}/orgs", json={"name": "delta", "owner_user_id": org.admin_id}, headers=org.admin
    )
    assert mine.status_code == 201, mine.text
    assert mine.json()["role"] == "owner"

    chosen = await client.post(
        f"{API}/orgs",
        json={"name": "gamma", "network_cidr": "100.65.0.0/16", "owner_user_id": org.outsider_id},
        headers=org.admin,
    )
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["network_cidr"] == "100.65.0.0/16"
    as_new_owner = await client.get(f"{API}/orgs/{chosen.json()['id']}", headers=org.outsider)
    assert as_new_owner.json()["role"] == "owner"


async def test_only_server_admins_create_orgs(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    org = await make_org_with_people(session)
    response = await client.post(f"{API}/orgs", json={"name": "mine"}, headers=org.owner)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_listing_depends_on_who_asks(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    org = await make_org_with_people(session)
    other = await make_org(session, name="other", network_cidr="100.64.16.0/20")
    await session.commit()
    as_admin = await client.get(f"{API}/orgs", headers=org.admin)
    assert [o["id"] for o in as_admin.json()] == [org.id, other.id]
    as_member = await client.get(f"{API}/orgs", headers=org.member)
    assert [(o["id"], o["role"]) for o in as_member.json()] == [(org.id, "member")]
    assert (await client.get(f"{API}/orgs", headers=org.outsider)).json() == []
    paged = await client.get(f"{API}/orgs?limit=1&offset=1", headers=org.admin)
    assert [o["id"] for o in paged.json()] == [other.id]


async def test_a_server_administrator_sees_their_own_role_or_none(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    org = await make_org_with_people(session)
    other = await make_org(session, name="other", network_cidr="100.64.16.0/20")
    admin = await session.get(User, org.admin_id)
    assert admin is not None
    await make_member(session, other, admin, OrgRole.MEMBER)
    await session.commit()
    listed = await client.get(f"{API}/orgs", headers=org.admin)
    assert [(o["id"], o["role"]) for o in listed.json()] == [(org.id, None), (other.id, "member")]
    outside = await client.get(f"{API}/orgs/{org.id}", headers=org.admin)
    assert outside.status_code == 200
    assert outside.json()["role"] is None
    inside = await client.get(f"{API}/orgs/{other.id}", headers=org.admin)
    assert inside.json()["role"] == "member"
    # Still allowed to manage both, as an owner would.
    renamed = await client.patch(f"{API}/orgs/{org.id}", json={"name": "acme2"}, headers=org.admin)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["role"] is None
    renamed = await client.patch(
        f"{API}/orgs/{other.id}", json={"name": "other2"}, headers=org.admin
    )
    assert renamed.json()["role"] == "member"
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["OrgOut"]
    assert "not a member" in schema["properties"]["role"]["description"]


async def test_get_org_for_members_only(client: httpx.AsyncClient, session: AsyncSession) -> None:
    org = await make_org_with_people(session)
    response = await client.get(f"{API}/orgs/{org.id}", headers=org.member)
    assert response.status_code == 200
    assert response.json()["role"] == "member"
    assert (await client.get(f"{API}/orgs/{org.id}", headers=org.outsider)).status_code == 404


async def test_rename(
    client: httpx.AsyncClient, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org = await make_org_with_people(session)
    url = f"{API}/orgs/{org.id}"
    refused = await client.patch(url, json={"name": "by-member"}, headers=org.member)
    assert refused.status_code == 403
    response = await client.patch(url, json={"name": "acme-renamed"}, headers=org.admin)
    assert response.status_code == 200
    assert response.json()["name"] == "acme-renamed"
    async with sessionmaker() as check:
        stored = await check.get(Organization, org.id)
        assert stored is not None
        assert stored.name == "acme-renamed"


async def test_renaming_tells_an_org_admin_nothing_about_other_names(
    client: httpx.AsyncClient, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Names are unique server-wide: only the operator renames, so no answer is an oracle."""
    org = await make_org_with_people(session)
    await make_org(session, name="someone-else", network_cidr="100.64.16.0/20")
    await session.commit()
    url = f"{API}/orgs/{org.id}"
    answers = []
    for headers in (org.org_admin, org.owner):
        for name in ("someone-else", "nobody-has-this"):
            answer = await client.patch(url, json={"name": name}, headers=headers)
            answers.append((answer.status_code, answer.json()))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][0] == 403
    async with sessionmaker() as check:
        stored = await check.get(Organization, org.id)
        assert stored is not None
        assert stored.name == "acme"
    taken = await client.patch(url, json={"name": "someone-else"}, headers=org.admin)
    assert taken.status_code == 409  # the operator sees the conflict


async def test_delete_org(
    client: httpx.AsyncClient, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org = await make_org_with_people(session)
    owner_try = await client.delete(f"{API}/orgs/{org.id}", headers=org.owner)
    assert owner_try.status_code == 403
    response = await client.delete(f"{API}/orgs/{org.id}", headers=org.admin)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"{API}/orgs/{org.id}", headers=org.admin)).status_code == 404
    async with sessionmaker() as check:
        left = (await check.execute(select(Membership).where(Membership.org_id == org.id))).all()
        assert left == []


async def test_members_list(client: httpx.AsyncClient, session: AsyncSession) -> None:
    org = await make_org_with_people(session)
    response = await client.get(f"{API}/orgs/{org.id}/members", headers=org.member)
    assert response.status_code == 200
    members = response.json()
    assert [(m["user_id"], m["role"]) for m in members] == [
        (org.owner_id, "owner"),
        (org.org_admin_id, "admin"),
        (org.member_id, "member"),
    ]
    assert set(members[0]) == {"user_id", "email", "name", "role", "joined_at"}


async def test_org_admins_cannot_add_users_and_learn_nothing_trying(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """No direct add without the user's consent: the same refusal for any address or id."""
    org = await make_org_with_people(session)
    url = f"{API}/orgs/{org.id}/members"
    answers = []
    for headers in (org.org_admin, org.owner):
        for body in (
            {"email": org.outsider_email},
            {"email": "nobody-at-all@example.org"},
            {"user_id": org.outsider_id},
            {"user_id": 999_999},
            {"user_id": org.admin_id, "role": "owner"},  # the server administrator
        ):
            answer = await client.post(url, json=body, headers=headers)
            answers.append((answer.status_code, answer.json()))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][0] == 403
    assert answers[0][1]["error"]["code"] == "invitation_required"
    assert org.outsider_email not in str(answers)
    still_hidden = await client.get(f"{API}/orgs/{org.id}", headers=org.outsider)
    assert still_hidden.status_code == 404
    by_member = await client.post(url, json={"email": org.outsider_email}, headers=org.member)
    assert by_member.status_code == 403


async def test_a_server_admin_adds_members_directly(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    org = await make_org_with_people(session)
    url = f"{API}/orgs/{org.id}/members"
    response = await client.post(url, json={"email": org.outsider_email.upper()}, headers=org.admin)
    assert response.status_code == 201, response.text
    assert (response.json()["user_id"], response.json()["role"]) == (org.outsider_id, "member")
    again = await client.post(url, json={"user_id": org.outsider_id}, headers=org.admin)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_member"
    unknown = await client.post(url, json={"email": "nobody@example.org"}, headers=org.admin)
    assert unknown.status_code == 404
    now_visible = await client.get(f"{API}/orgs/{org.id}", headers=org.outsider)
    assert now_visible.status_code == 200
    owner = await client.post(
        url, json={"user_id": org.admin_id, "role": "owner"}, headers=org.admin
    )
    assert owner.status_code == 201
    assert owner.json()["role"] == "owner"


async def test_change_role(client: httpx.AsyncClient, session: AsyncSession) -> None:
    org = await make_org_with_people(session)
    member_url = f"{API}/orgs/{org.id}/members/{org.member_id}"
    owner_url = f"{API}/orgs/{org.id}/members/{org.owner_id}"
    promoted = await client.patch(member_url, json={"role": "admin"}, headers=org.org_admin)
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    to_owner = await client.patch(member_url, json={"role": "owner"}, headers=org.org_admin)
    assert to_owner.status_code == 403
    last = await client.patch(owner_url, json={"role": "admin"}, headers=org.owner)
    assert last.status_code == 409
    assert last.json()["error"]["code"] == "last_owner"
    assert (
        await client.patch(member_url, json={"role": "owner"}, headers=org.owner)
    ).status_code == 200
    stepped_down = await client.patch(owner_url, json={"role": "admin"}, headers=org.owner)
    assert stepped_down.status_code == 200
    assert stepped_down.json()["role"] == "admin"


async def test_remove_member_and_leave(client: httpx.AsyncClient, session: AsyncSession) -> None:
    org = await make_org_with_people(session)
    base = f"{API}/orgs/{org.id}/members"
    by_member = await client.delete(f"{base}/{org.org_admin_id}", headers=org.member)
    assert by_member.status_code == 403
    owner_by_admin = await client.delete(f"{base}/{org.owner_id}", headers=org.org_admin)
    assert owner_by_admin.status_code == 403
    last_owner = await client.delete(f"{base}/{org.owner_id}", headers=org.owner)
    assert last_owner.status_code == 409
    left = await client.delete(f"{base}/{org.member_id}", headers=org.member)
    assert left.status_code == 204
    assert (await client.get(f"{API}/orgs/{org.id}", headers=org.member)).status_code == 404
    removed = await client.delete(f"{base}/{org.org_admin_id}", headers=org.admin)
    assert removed.status_code == 204
    gone = await client.delete(f"{base}/{org.org_admin_id}", headers=org.admin)
    assert gone.status_code == 404


async def test_openapi_documents_the_endpoints(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/orgs/{org_id}/members"]["post"]
    assert operation["summary"]
    assert "members" in operation["tags"]
    assert operation["responses"]["201"]["content"]["application/json"]["schema"]
    for path in ("/api/v1/orgs", "/api/v1/users", "/api/v1/tokens", "/api/v1/users/me"):
        for operation in spec["paths"][path].values():
            assert operation["summary"]
            assert operation["tags"]
