"""No tenant reaches another tenant's org: every route with ``{org_id}``, present and future.

The routes are discovered from the app, so an endpoint another domain adds later is covered
without touching this file. Org A is filled with a real object of every org-scoped table;
B's admin and B's plain member then call every method of every org route against A's id.
Each call must be refused (403/404), and A's rows must be unchanged afterwards.
"""

from __future__ import annotations

import asyncio
import enum
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import httpx
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.protocol.urls import API_PREFIX
from wiremesh.server.auth import websessions
from wiremesh.server.auth.models import ApiToken
from wiremesh.server.auth.service import authenticate_token
from wiremesh.server.db.models import (
    Base,
    ConnectionStatus,
    Membership,
    SetupKey,
    SMTPSettings,
    VirtualIPMapping,
)
from wiremesh.server.orgs.models import Organization, OrgRole
from wiremesh.server.paths.models import PeerPath
from wiremesh.server.users.models import User

REFUSED = {403, 404}


@dataclass
class Tenants:
    org_a: Organization
    org_b: Organization
    a_member_ids: list[int]
    path_values: dict[str, Any]
    b_admin_token: str
    b_member_token: str


@dataclass(frozen=True)
class OrgRoute:
    path: str
    methods: frozenset[str]
    route: APIRoute


def org_routes(app: FastAPI, *, api: bool = True) -> list[OrgRoute]:
    """Every HTTP route whose path holds ``{org_id}``, through included routers too: the
    API's (``api``), or else the dashboard's pages."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path
        if (
            isinstance(route, APIRoute)
            and path
            and "{org_id" in path
            and path.startswith(API_PREFIX) is api
        ):
            found.append(OrgRoute(path, frozenset(context.methods or route.methods), route))
    return found


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _strip(annotation: Any) -> Any:
    """The plain type inside Annotated[...] and Optional[...]."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            annotation = options[0]
        else:
            return annotation


def sample_value(name: str, annotation: Any, known: dict[str, Any]) -> Any:
    """A plausible value for a parameter or body field, from its name and type."""
    if name in known:
        value = known[name]
        kind = _strip(annotation)
        if isinstance(kind, type) and issubclass(kind, int) and not isinstance(value, int):
            return 1
        return value
    kind = _strip(annotation)
    origin = get_origin(kind)
    if origin is Literal:
        return get_args(kind)[0]
    if origin in (list, set, tuple, frozenset):
        return []
    if origin is dict:
        return {}
    if isinstance(kind, type):
        if issubclass(kind, BaseModel):
            return sample_body(kind, known)
        if issubclass(kind, enum.Enum):
            return next(iter(kind)).value
        if issubclass(kind, bool):
            return True
        if issubclass(kind, int):
            return 1
        if issubclass(kind, float):
            return 1.0
        if issubclass(kind, uuid.UUID):
            return str(uuid.uuid4())
    lowered = name.lower()
    for hint, value in (
        ("email", "probe@example.com"),
        ("cidr", "100.127.255.0/24"),
        ("network", "100.127.255.0/24"),
        ("ip", "100.127.255.1"),
        ("server", "smtp.example.com"),
        ("host", "probe.example.com"),
        ("url", "https://probe.example.com"),
        ("key", "probe"),
    ):
        if hint in lowered:
            return value
    return "probe"


def sample_body(model: type[BaseModel], known: dict[str, Any]) -> dict[str, Any]:
    """Every required field of ``model``, filled plausibly (valid when the types allow)."""
    return {
        field.alias or name: sample_value(name, field.annotation, known)
        for name, field in model.model_fields.items()
        if field.is_required()
    }


def build_request(
    org_route: OrgRoute, org_id: int, known: dict[str, Any]
) -> tuple[str, dict[str, Any], Any]:
    """The URL, query and JSON body for one call of ``org_route`` against ``org_id``."""
    route = org_route.route
    path_types: dict[str, Any] = {}
    query: dict[str, Any] = {}
    for dependant in _dependants(route.dependant):
        for param in dependant.path_params:
            path_types[param.name] = param.field_info.annotation
        for param in dependant.query_params:
            if param.field_info.is_required():
                query[param.alias] = sample_value(param.name, param.field_info.annotation, known)
    url = org_route.path
    for name in path_types:
        value = org_id if name == "org_id" else sample_value(name, path_types[name], known)
        url = url.replace("{" + name + "}", str(value))
        url = url.replace("{" + name + ":int}", str(value))
    body: Any = None
    if route.body_field is not None:
        annotation = route.body_field.field_info.annotation
        kind = _strip(annotation)
        body = (
            sample_body(kind, known)
            if isinstance(kind, type) and issubclass(kind, BaseModel)
            else sample_value(route.body_field.name, annotation, known)
        )
        try:  # only informative: a refusal must come whatever the body
            TypeAdapter(annotation).validate_python(body)
        except ValidationError:
            body = body if isinstance(body, dict) else {}
    return url, query, body


def _row(table: Table, row: Any) -> tuple[str, ...]:
    mapping = row._mapping
    return tuple(
        f"{column.name}={mapping[column]!r}"
        for column in table.columns
        if column.name != "last_used_at"
    )


async def snapshot(
    sessionmaker: async_sessionmaker[AsyncSession], org_id: int, user_ids: list[int]
) -> dict[str, list[tuple[str, ...]]]:
    """Every row that belongs to org ``org_id``, its members and their tokens."""
    rows: dict[str, list[tuple[str, ...]]] = {}
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            if table.name == "organization":
                where = table.c.id == org_id
            elif "org_id" in table.c:
                where = table.c.org_id == org_id
            elif table.name == "user":
                where = table.c.id.in_(user_ids)
            elif "user_id" in table.c:
                where = table.c.user_id.in_(user_ids)
            else:
                continue
            result = await session.execute(select(table).where(where))
            rows[table.name] = sorted(_row(table, row) for row in result)
    return rows


async def make_tenants(session: AsyncSession) -> Tenants:
    org_a = await make_org(session, name="tenant-a", network_cidr="100.64.0.0/24")
    org_b = await make_org(session, name="tenant-b", network_cidr="100.64.1.0/24")
    a_owner = await make_user(session)
    a_admin = await make_user(session)
    a_member = await make_user(session)
    await make_member(session, org_a, a_owner, OrgRole.OWNER)
    await make_member(session, org_a, a_admin, OrgRole.ADMIN)
    await make_member(session, org_a, a_member, OrgRole.MEMBER)
    a_token = (await make_token(session, a_owner)).split("_")[1]
    b_admin = await make_user(session)
    b_member = await make_user(session)
    await make_member(session, org_b, b_admin, OrgRole.OWNER)
    await make_member(session, org_b, b_member, OrgRole.MEMBER)

    key = SetupKey(
        org_id=org_a.id, user_id=a_owner.id, name="a-key", lookup="a" * 12, secret_hash="0" * 64
    )
    session.add(key)
    await session.flush()
    device = VirtualIPMapping(
        org_id=org_a.id,
        user_id=a_member.id,
        peer_id="peer-a",
        virtual_ip="100.64.0.1",
        public_key="A" * 43 + "=",
        hostname="a-host",
        credential_lookup="b" * 12,
        credential_hash="1" * 64,
        setup_key_id=key.id,
    )
    connection = ConnectionStatus(
        user_id=a_member.id,
        org_id=org_a.id,
        virtual_ip="100.64.0.1",
        peer_id="peer-a",
        connection_id=uuid.uuid4(),
    )
    smtp = SMTPSettings(
        org_id=org_a.id, smtp_server="smtp.a.example", smtp_port=587, from_email="a@a.example"
    )
    session.add_all([device, connection, smtp])
    await session.flush()
    session.add(PeerPath(device_id=device.id, peer_id="peer-a2", org_id=org_a.id, path="relay"))
    await session.flush()
    token_id = (
        await session.execute(select(ApiToken.id).where(ApiToken.lookup == a_token))
    ).scalar_one()

    path_values: dict[str, Any] = {
        "user_id": a_member.id,
        "member_id": a_member.id,
        "device_id": device.id,
        "mapping_id": device.id,
        "peer_id": device.peer_id,
        "key_id": key.id,
        "setup_key_id": key.id,
        "connection_id": str(connection.connection_id),
        "session_id": str(connection.connection_id),
        "smtp_id": smtp.id,
        "settings_id": smtp.id,
        "token_id": token_id,
        "email": a_member.email,
    }
    tenants = Tenants(
        org_a=org_a,
        org_b=org_b,
        a_member_ids=[a_owner.id, a_admin.id, a_member.id],
        path_values=path_values,
        b_admin_token=await make_token(session, b_admin),
        b_member_token=await make_token(session, b_member),
    )
    await session.commit()
    return tenants


async def test_no_org_route_lets_another_tenant_in(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tenants = await make_tenants(session)
    routes = org_routes(app)
    assert routes, "no route with {org_id} was found: the discovery is broken"
    before = await snapshot(sessionmaker, tenants.org_a.id, tenants.a_member_ids)
    assert before["virtual_ip_mapping"], "org A must hold a device"
    assert before["membership"], "org A must have members"

    leaks: list[str] = []
    calls = 0
    for actor, token in (
        ("B's admin", tenants.b_admin_token),
        ("B's member", tenants.b_member_token),
    ):
        for org_route in routes:
            for method in sorted(org_route.methods - {"HEAD", "OPTIONS"}):
                url, query, body = build_request(org_route, tenants.org_a.id, tenants.path_values)
                response = await client.request(
                    method,
                    url,
                    params=query,
                    json=body if method in {"POST", "PUT", "PATCH"} else None,
                    headers=auth(token),
                )
                calls += 1
                if response.status_code not in REFUSED:
                    leaks.append(
                        f"{actor}: {method} {url} -> {response.status_code} {response.text[:200]}"
                    )
                else:
                    assert response.json()["error"]["code"] in {"forbidden", "not_found"}

    assert calls >= len(routes)
    assert not leaks, (
        "another tenant got through (org routes must check access first, e.g. with the "
        "OrgMember/OrgAdmin dependencies of wiremesh.server.orgs.deps):\n" + "\n".join(leaks)
    )
    after = await snapshot(sessionmaker, tenants.org_a.id, tenants.a_member_ids)
    assert after == before


async def test_no_dashboard_page_lets_another_tenant_in(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The same sweep over the dashboard: B's people, signed in with a session and posting
    forms with their valid CSRF token, get a refusal page from every page and form of A's."""
    tenants = await make_tenants(session)
    routes = org_routes(app, api=False)
    assert routes, "no dashboard page with {org_id} was found: the discovery is broken"
    before = await snapshot(sessionmaker, tenants.org_a.id, tenants.a_member_ids)

    leaks: list[str] = []
    for actor, token in (
        ("B's admin", tenants.b_admin_token),
        ("B's member", tenants.b_member_token),
    ):
        async with sessionmaker() as own:
            _token, user = await authenticate_token(own, token)
            _row, secret = await websessions.start_session(own, user)
            await own.commit()
        client.cookies.set("wiremesh_session", secret)
        for org_route in routes:
            for method in sorted(org_route.methods - {"HEAD", "OPTIONS"}):
                url, query, body = build_request(org_route, tenants.org_a.id, tenants.path_values)
                form = {key: str(value) for key, value in (body or {}).items()}
                try:
                    async with asyncio.timeout(30):  # a leaked live stream would never end
                        response = await client.request(
                            method,
                            url,
                            params=query,
                            data={**form, "csrf": websessions.csrf_token(secret)}
                            if method == "POST"
                            else None,
                        )
                except TimeoutError:
                    leaks.append(f"{actor}: {method} {url} -> an open stream")
                    continue
                if response.status_code not in REFUSED:
                    leaks.append(f"{actor}: {method} {url} -> {response.status_code}")
                else:
                    assert "text/html" in response.headers["content-type"]
        client.cookies.clear()

    assert not leaks, "another tenant got through a dashboard page:\n" + "\n".join(leaks)
    after = await snapshot(sessionmaker, tenants.org_a.id, tenants.a_member_ids)
    assert after == before


async def test_org_list_shows_only_your_own_orgs(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tenants = await make_tenants(session)
    for token in (tenants.b_admin_token, tenants.b_member_token):
        response = await client.get("/api/v1/orgs", headers=auth(token))
        assert response.status_code == 200
        assert [org["id"] for org in response.json()] == [tenants.org_b.id]


async def test_outsider_gets_the_same_404_as_for_a_missing_org(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tenants = await make_tenants(session)
    headers = auth(tenants.b_admin_token)
    existing = await client.get(f"/api/v1/orgs/{tenants.org_a.id}/members", headers=headers)
    missing = await client.get("/api/v1/orgs/999999/members", headers=headers)
    assert existing.status_code == missing.status_code == 404
    assert existing.json() == missing.json()


async def test_user_rows_of_a_are_not_reachable_through_b(
    client: httpx.AsyncClient, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """B's admin names A's member in B's org URL: refused, A's membership untouched."""
    tenants = await make_tenants(session)
    a_member = tenants.path_values["user_id"]
    headers = auth(tenants.b_admin_token)
    base = f"/api/v1/orgs/{tenants.org_b.id}/members/{a_member}"
    assert (await client.patch(base, json={"role": "admin"}, headers=headers)).status_code == 404
    assert (await client.delete(base, headers=headers)).status_code == 404
    async with sessionmaker() as check:
        role = (
            await check.execute(
                select(Membership.role).where(
                    Membership.org_id == tenants.org_a.id, Membership.user_id == a_member
                )
            )
        ).scalar_one()
        assert role == OrgRole.MEMBER.value
        assert await check.get(User, a_member) is not None
