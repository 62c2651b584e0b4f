"""Virtual IP allocation: the lowest free host address, full networks, reuse, concurrency."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.config import Settings
from wiremesh.server.devices.models import SetupKey, VirtualIPMapping
from wiremesh.server.ipam.service import first_free_address
from wiremesh.server.orgs.models import OrgRole

# --- first_free_address (pure) ---------------------------------------------------------------


def test_skips_network_and_broadcast() -> None:
    assert first_free_address("10.0.0.0/30", set()) == "10.0.0.1"
    assert first_free_address("10.0.0.0/30", {"10.0.0.1"}) == "10.0.0.2"
    assert first_free_address("10.0.0.0/30", {"10.0.0.1", "10.0.0.2"}) is None


def test_returns_the_lowest_free_address() -> None:
    taken = {"100.64.0.1", "100.64.0.2", "100.64.0.4"}
    assert first_free_address("100.64.0.0/24", taken) == "100.64.0.3"


def test_none_when_full() -> None:
    network = ipaddress.ip_network("100.64.0.0/28")
    taken = {str(host) for host in network.hosts()}
    assert first_free_address(str(network), taken) is None


def test_addresses_outside_the_network_do_not_count() -> None:
    assert first_free_address("100.64.0.0/29", {"100.64.0.0", "100.64.0.7", "10.0.0.1"}) == (
        "100.64.0.1"
    )


@given(
    prefix=st.integers(min_value=24, max_value=30),
    data=st.data(),
)
def test_the_answer_is_the_smallest_usable_host_not_taken(prefix: int, data: st.DataObject) -> None:
    network = ipaddress.ip_network(f"100.64.0.0/{prefix}")
    hosts = [str(h) for h in network.hosts()]
    taken = set(data.draw(st.lists(st.sampled_from(hosts), unique=True)))
    free = [h for h in hosts if h not in taken]
    result = first_free_address(str(network), taken)
    assert result == (free[0] if free else None)
    if result is not None:
        assert result not in (str(network.network_address), str(network.broadcast_address))


# --- through the API ------------------------------------------------------------------------


@dataclass
class Org:
    org_id: int
    token: str
    network: str


async def _org(sessionmaker: async_sessionmaker[AsyncSession], network: str) -> Org:
    async with sessionmaker() as session:
        org = await make_org(session, network_cidr=network)
        owner = await make_user(session)
        await make_member(session, org, owner, OrgRole.OWNER)
        token = await make_token(session, owner)
        await session.commit()
        return Org(org.id, token, network)


async def _setup_key(
    client: httpx.AsyncClient, org: Org, *, usage_limit: int | None = None
) -> tuple[int, str]:
    body: dict[str, object] = {"name": "fleet", "reusable": True}
    if usage_limit is not None:
        body["usage_limit"] = usage_limit
    response = await client.post(
        f"/api/v1/orgs/{org.org_id}/setup-keys", json=body, headers=auth(org.token)
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["key"]


async def _enroll(client: httpx.AsyncClient, key: str, hostname: str) -> httpx.Response:
    return await client.post("/api/v1/enroll", json={"setup_key": key, "hostname": hostname})


async def test_a_slash_30_takes_two_devices_then_refuses(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org = await _org(sessionmaker, "100.64.7.0/30")
    _key_id, key = await _setup_key(client, org)
    first = await _enroll(client, key, "one")
    second = await _enroll(client, key, "two")
    assert first.status_code == second.status_code == 201
    assert [first.json()["device"]["virtual_ip"], second.json()["device"]["virtual_ip"]] == [
        "100.64.7.1",
        "100.64.7.2",
    ]
    third = await _enroll(client, key, "three")
    assert third.status_code == 409
    error = third.json()["error"]
    assert error["code"] == "network_full"
    assert "100.64.7.0/30" in error["message"]
    assert "no free address" in error["message"]
    async with sessionmaker() as session:
        count = len((await session.execute(select(VirtualIPMapping.id))).all())
        used = (await session.execute(select(SetupKey.used_count))).scalar_one()
    assert count == 2
    assert used == 2, "a refused enrollment must not consume a use of the key"


async def test_a_deleted_devices_address_is_handed_out_again(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org = await _org(sessionmaker, "100.64.8.0/29")
    _key_id, key = await _setup_key(client, org)
    enrolled = [(await _enroll(client, key, f"host{i}")).json()["device"] for i in range(3)]
    assert [d["virtual_ip"] for d in enrolled] == ["100.64.8.1", "100.64.8.2", "100.64.8.3"]
    deleted = await client.delete(
        f"/api/v1/orgs/{org.org_id}/devices/{enrolled[1]['id']}", headers=auth(org.token)
    )
    assert deleted.status_code == 204
    again = await _enroll(client, key, "newcomer")
    assert again.status_code == 201
    assert again.json()["device"]["virtual_ip"] == "100.64.8.2"
    after = await _enroll(client, key, "next")
    assert after.json()["device"]["virtual_ip"] == "100.64.8.4"


async def test_200_concurrent_enrollments_get_200_distinct_addresses(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org = await _org(sessionmaker, "100.64.16.0/23")
    key_id, key = await _setup_key(client, org)
    responses = await asyncio.gather(*(_enroll(client, key, f"node{i}") for i in range(200)))
    assert [r.status_code for r in responses] == [201] * 200, {
        r.status_code: r.text for r in responses if r.status_code != 201
    }
    addresses = [r.json()["device"]["virtual_ip"] for r in responses]
    assert len(set(addresses)) == 200
    network = ipaddress.ip_network(org.network)
    hosts = list(network.hosts())
    assert all(ipaddress.ip_address(a) in hosts for a in addresses)
    # Allocation is "lowest free": 200 enrollments into an empty network fill the first 200.
    assert sorted(ipaddress.ip_address(a) for a in addresses) == hosts[:200]
    async with sessionmaker() as session:
        stored = list((await session.execute(select(VirtualIPMapping.virtual_ip))).scalars())
        key_row = await session.get(SetupKey, key_id)
    assert sorted(stored) == sorted(addresses)
    assert key_row is not None
    assert key_row.used_count == 200


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Fifty refused enrollments from one address are the point of a test here, not an
    attack: no failed-authentication budget gets in their way."""
    return settings.model_copy(update={"auth_failure_burst": 1000})


async def test_a_usage_limit_holds_under_concurrency(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    org = await _org(sessionmaker, "100.64.20.0/23")
    key_id, key = await _setup_key(client, org, usage_limit=150)
    responses = await asyncio.gather(*(_enroll(client, key, f"node{i}") for i in range(200)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 150
    assert statuses.count(401) == 50
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 401} == {
        "invalid_setup_key"
    }
    addresses = {r.json()["device"]["virtual_ip"] for r in responses if r.status_code == 201}
    assert len(addresses) == 150
    async with sessionmaker() as session:
        key_row = await session.get(SetupKey, key_id)
        devices = len((await session.execute(select(VirtualIPMapping.id))).all())
    assert key_row is not None
    assert key_row.used_count == 150
    assert devices == 150


async def test_concurrent_enrollments_with_different_keys_still_get_distinct_addresses(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """With one key, the key's row lock alone serializes enrollments; with many keys only the
    org lock does."""
    org = await _org(sessionmaker, "100.64.24.0/24")
    keys = [(await _setup_key(client, org))[1] for _ in range(40)]
    responses = await asyncio.gather(
        *(_enroll(client, key, f"node{i}") for i, key in enumerate(keys))
    )
    assert [r.status_code for r in responses] == [201] * 40, [
        r.text for r in responses if r.status_code != 201
    ]
    addresses = {r.json()["device"]["virtual_ip"] for r in responses}
    assert len(addresses) == 40
