"""``POST /api/v1/relay/sync`` over the real app, on both databases: who may check in, what a
check-in writes (and records as events, once per change), what it answers, and the sweep
that takes silent relays off the list."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_org, make_user
from tests.protocol.helpers import wg_key
from tests.server.paths.conftest import (
    RELAY_TOKEN,
    Mesh,
    Written,
    post_sync,
    relay_body,
    written,
)
from wiremesh.protocol.relay import MAX_OBSERVED, RELAY_TIMEOUT
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.paths import service
from wiremesh.server.paths.models import Relay

NOTHING = Written(relays=[], observed=[], events=[])


@pytest.mark.parametrize("relay_token", [None])
async def test_a_server_without_a_relay_token_takes_no_relays(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for token in (None, "anything", RELAY_TOKEN):
        response = await post_sync(client, relay_body(), token=token)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "relays_disabled"
    assert await written(sessionmaker) == NOTHING


async def test_a_wrong_or_missing_token_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], mesh: Mesh
) -> None:
    body = relay_body(observed=[{"public_key": wg_key(101), "endpoint": "203.0.113.9:40000"}])
    for headers in (
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {RELAY_TOKEN}x"},
        {"Authorization": f"Basic {RELAY_TOKEN}"},
    ):
        response = await client.post("/api/v1/relay/sync", json=body, headers=headers)
        assert response.status_code == 401, headers
        error = response.json()["error"]
        assert error["code"] == "bad_relay_token"
        assert RELAY_TOKEN not in response.text
    assert await written(sessionmaker) == NOTHING


async def test_the_first_check_in_brings_the_relay_online_with_one_event(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for _ in range(3):
        response = await post_sync(client, relay_body())
        assert response.status_code == 200, response.text
    state = await written(sessionmaker)
    assert state.relays == [("r1", wg_key(1), "198.51.100.7:3478", True)]
    assert state.of_kind("relay_changed") == [
        {"name": "r1", "public_key": wg_key(1), "endpoint": "198.51.100.7:3478", "online": True}
    ]
    assert [org for _kind, org, _payload in state.events] == [0]


async def test_a_new_endpoint_or_key_is_one_event_each(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await post_sync(client, relay_body())
    moved = relay_body(endpoint="198.51.100.8:3478")
    rekeyed = relay_body(endpoint="198.51.100.8:3478", key=wg_key(2))
    for body in (moved, moved, rekeyed, rekeyed):
        assert (await post_sync(client, body)).status_code == 200
    state = await written(sessionmaker)
    assert state.relays == [("r1", wg_key(2), "198.51.100.8:3478", True)]
    assert [
        (event["public_key"], event["endpoint"]) for event in state.of_kind("relay_changed")
    ] == [
        (wg_key(1), "198.51.100.7:3478"),
        (wg_key(1), "198.51.100.8:3478"),
        (wg_key(2), "198.51.100.8:3478"),
    ]


async def test_observed_endpoints_are_stored_once_and_unknown_keys_ignored(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], mesh: Mesh
) -> None:
    alpha = mesh.active[0]
    observed = [
        {"public_key": wg_key(101), "endpoint": "203.0.113.9:40000"},
        {"public_key": wg_key(999), "endpoint": "203.0.113.10:40000"},  # no such device
        {"public_key": wg_key(103), "endpoint": "203.0.113.11:40000"},  # revoked
    ]
    for _ in range(2):
        response = await post_sync(client, relay_body(observed=observed))
        assert response.status_code == 200, response.text
    state = await written(sessionmaker)
    assert state.observed == [(alpha.id, "203.0.113.9:40000", "r1")]
    assert [
        (org, payload) for kind, org, payload in state.events if kind == "endpoint_observed"
    ] == [
        (
            mesh.org_id,
            {"peer_id": alpha.peer_id, "endpoint": "203.0.113.9:40000", "relay": "r1"},
        )
    ]

    moved = [{"public_key": wg_key(101), "endpoint": "203.0.113.9:40001"}]
    assert (await post_sync(client, relay_body(observed=moved))).status_code == 200
    state = await written(sessionmaker)
    assert state.observed == [(alpha.id, "203.0.113.9:40001", "r1")]
    assert len(state.of_kind("endpoint_observed")) == 2


async def test_a_key_copied_into_another_org_names_neither_device(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], mesh: Mesh
) -> None:
    """Keys are unique per organization only: a member of another org who sets its device's
    key to alpha's must not be told alpha's address (nor take alpha's candidate away)."""
    alpha = mesh.active[0]
    async with sessionmaker() as session:
        other = await make_org(session, network_cidr="100.64.8.0/24")
        user = await make_user(session)
        session.add(
            VirtualIPMapping(
                org_id=other.id,
                user_id=user.id,
                peer_id="peer-copycat",
                virtual_ip="100.64.8.1",
                hostname="copycat",
                credential_lookup="lookupcopycat",
                credential_hash="0" * 64,
                public_key=alpha.public_key,
            )
        )
        await session.commit()
    observed = [{"public_key": alpha.public_key, "endpoint": "203.0.113.9:40000"}]
    response = await post_sync(client, relay_body(observed=observed))
    assert response.status_code == 200, response.text
    state = await written(sessionmaker)
    assert state.observed == []
    assert state.of_kind("endpoint_observed") == []


async def test_the_device_lists_come_only_when_the_relay_is_behind(
    client: httpx.AsyncClient, mesh: Mesh
) -> None:
    first = (await post_sync(client, relay_body())).json()
    assert first["version"] > 0
    assert first["orgs"] == [{"id": mesh.org_id, "network": mesh.network}]
    assert first["devices"] == [
        {"public_key": device.public_key, "virtual_ip": device.virtual_ip} for device in mesh.active
    ]

    current = (await post_sync(client, relay_body(version=first["version"]))).json()
    assert current == {"version": first["version"], "orgs": None, "devices": None}

    behind = (await post_sync(client, relay_body(version=first["version"] - 1))).json()
    assert behind["version"] == first["version"]
    assert behind["orgs"] == first["orgs"]
    assert behind["devices"] == first["devices"]


async def test_the_sweep_takes_a_silent_relay_offline_once(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await post_sync(client, relay_body("r1"))
    await post_sync(client, relay_body("r2", key=wg_key(2), endpoint="198.51.100.9:3478"))
    async with sessionmaker() as session:
        await session.execute(
            update(Relay)
            .where(Relay.name == "r1")
            .values(last_seen_at=utcnow() - timedelta(seconds=RELAY_TIMEOUT + 1))
        )
        await session.commit()
    async with sessionmaker() as session:
        assert await service.take_silent_relays_offline(session) == ["r1"]
        await session.commit()
    async with sessionmaker() as session:
        assert await service.take_silent_relays_offline(session) == []
        await session.commit()
    state = await written(sessionmaker)
    assert [(name, online) for name, _key, _endpoint, online in state.relays] == [
        ("r1", False),
        ("r2", True),
    ]
    assert [(event["name"], event["online"]) for event in state.of_kind("relay_changed")] == [
        ("r1", True),
        ("r2", True),
        ("r1", False),
    ]

    # Checking in again brings it back, with its event.
    assert (await post_sync(client, relay_body("r1"))).status_code == 200
    state = await written(sessionmaker)
    assert state.relays[0][3] is True
    assert [(event["name"], event["online"]) for event in state.of_kind("relay_changed")][-1] == (
        "r1",
        True,
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(relay_body("R1"), id="upper-case name"),
        pytest.param(relay_body("-r1"), id="leading dash"),
        pytest.param(relay_body("r" * 33), id="name too long"),
        pytest.param(relay_body("r1/../x"), id="name with a slash"),
        pytest.param(relay_body(key="not-a-key"), id="bad relay key"),
        pytest.param(relay_body(endpoint="198.51.100.7"), id="endpoint without port"),
        pytest.param(relay_body(version=-1), id="negative version"),
        pytest.param(
            relay_body(observed=[{"public_key": "AAAA", "endpoint": "203.0.113.9:1"}]),
            id="bad observed key",
        ),
        pytest.param(
            relay_body(
                observed=[{"public_key": wg_key(101), "endpoint": "203.0.113.9:40000"}]
                * (MAX_OBSERVED + 1)
            ),
            id="too many observations",
        ),
    ],
)
async def test_bad_input_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    mesh: Mesh,
    body: dict[str, object],
) -> None:
    response = await post_sync(client, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert await written(sessionmaker) == NOTHING
