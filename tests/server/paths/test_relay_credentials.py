"""Per-relay credentials at ``POST /api/v1/relay/sync``, on both databases: a credential
checks in as its own relay only, the global token can no longer claim that name, and
removing the credential shuts out that one relay (agents drop it at once)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.protocol.helpers import wg_key
from tests.server.paths.conftest import Written, post_sync, relay_body, written
from tests.support.waiting import eventually
from wiremesh.protocol.relay import RELAY_TIMEOUT
from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import ApiError
from wiremesh.server.paths import service
from wiremesh.server.paths.models import Relay, RelayCredential
from wiremesh.server.state import AppState


async def add_credential(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> str:
    async with sessionmaker() as session:
        _credential, plaintext = await service.add_relay_credential(session, name)
        await session.commit()
        return plaintext


async def remove(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> None:
    async with sessionmaker() as session:
        await service.remove_relay(session, name)
        await session.commit()


def relay_events(state: Written) -> list[tuple[str, bool]]:
    return [(event["name"], event["online"]) for event in state.of_kind("relay_changed")]


@pytest.mark.parametrize("relay_token", [None, "global-relay-token-0123456789"])
async def test_a_relay_checks_in_with_its_own_credential(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """With or without a global token: a credential is enough for its relay."""
    token = await add_credential(sessionmaker, "r1")
    assert token.startswith("wmr_")
    response = await post_sync(client, relay_body("r1"), token=token)
    assert response.status_code == 200, response.text
    assert token not in response.text
    state = await written(sessionmaker)
    assert [(name, online) for name, _key, _endpoint, online in state.relays] == [("r1", True)]
    assert relay_events(state) == [("r1", True)]


async def test_only_a_hash_of_the_credential_is_stored(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    token = await add_credential(sessionmaker, "r1")
    async with sessionmaker() as session:
        row = (await session.execute(select(RelayCredential))).scalar_one()
    assert row.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {row.lookup, row.secret_hash, row.name}
    assert token.split("_")[1] == row.lookup


@pytest.mark.parametrize("relay_token", [None, "global-relay-token-0123456789"])
async def test_a_credential_is_good_for_its_own_name_only(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = await add_credential(sessionmaker, "r1")
    await add_credential(sessionmaker, "r2")
    for name in ("r2", "r3"):
        response = await post_sync(client, relay_body(name), token=token)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "relay_name_mismatch"
    assert await written(sessionmaker) == Written(relays=[], observed=[], events=[])


@pytest.mark.parametrize("relay_token", [None, "global-relay-token-0123456789"])
async def test_a_wrong_credential_is_refused(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = await add_credential(sessionmaker, "r1")
    kind, lookup, secret = token.split("_", 2)
    for wrong in (
        f"{kind}_{lookup}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",  # right lookup
        f"{kind}_{'0' * len(lookup)}_{secret}",  # no such lookup
        f"{kind}_{lookup}",
        token.upper(),
    ):
        response = await post_sync(client, relay_body("r1"), token=wrong)
        assert response.status_code == 401, wrong
        assert response.json()["error"]["code"] == "bad_relay_token"
    assert await written(sessionmaker) == Written(relays=[], observed=[], events=[])


async def test_the_global_token_cannot_claim_a_name_with_a_credential(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_credential(sessionmaker, "r1")
    response = await post_sync(client, relay_body("r1"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "relay_has_credential"
    assert await written(sessionmaker) == Written(relays=[], observed=[], events=[])
    # Other names still check in with the global token.
    response = await post_sync(client, relay_body("r2", key=wg_key(2)))
    assert response.status_code == 200, response.text


async def test_removing_a_credential_shuts_out_that_relay_and_agents_drop_it(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    app_state: AppState,
) -> None:
    own = await add_credential(sessionmaker, "r1")
    assert (await post_sync(client, relay_body("r1"), token=own)).status_code == 200
    assert (await post_sync(client, relay_body("r2", key=wg_key(2)))).status_code == 200
    await eventually(lambda: set(app_state.hub.relays) == {"r1", "r2"}, what="both relays up")

    await remove(sessionmaker, "r1")
    state = await written(sessionmaker)
    assert [name for name, *_rest in state.relays] == ["r2"]
    assert relay_events(state) == [("r1", True), ("r2", True), ("r1", False)]
    await eventually(lambda: set(app_state.hub.relays) == {"r2"}, what="r1 dropped")

    response = await post_sync(client, relay_body("r1"), token=own)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_relay_token"
    assert relay_events(await written(sessionmaker)) == relay_events(state)

    # The name is free again: the global token may claim it (the simple set-up).
    assert (await post_sync(client, relay_body("r1"))).status_code == 200


async def test_removing_an_offline_or_unknown_relay(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_credential(sessionmaker, "never-seen")
    await remove(sessionmaker, "never-seen")
    assert (await post_sync(client, relay_body("r1"))).status_code == 200
    async with sessionmaker() as session:
        await session.execute(update(Relay).values(online=False))
        await session.commit()
    await remove(sessionmaker, "r1")  # offline: no event, the row goes
    state = await written(sessionmaker)
    assert state.relays == []
    assert relay_events(state) == [("r1", True)]
    async with sessionmaker() as session:
        assert await session.scalar(select(RelayCredential.id)) is None
        with pytest.raises(ApiError) as refused:
            await service.remove_relay(session, "r1")
    assert (refused.value.status, refused.value.code) == (404, "not_found")


async def test_a_second_credential_for_a_name_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await add_credential(sessionmaker, "r1")
    async with sessionmaker() as session:
        with pytest.raises(ApiError) as refused:
            await service.add_relay_credential(session, "r1")
    assert (refused.value.status, refused.value.code) == (409, "relay_credential_exists")


@pytest.mark.parametrize("relay_token", [None])
async def test_a_relay_on_its_own_credential_is_swept_without_a_global_token(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    app_state: AppState,
) -> None:
    """The server started with no relay to sweep for; the first one up starts the sweep."""
    token = await add_credential(sessionmaker, "r1")
    assert (await post_sync(client, relay_body("r1"), token=token)).status_code == 200
    async with sessionmaker() as session:
        await session.execute(
            update(Relay).values(last_seen_at=utcnow() - timedelta(seconds=RELAY_TIMEOUT + 1))
        )
        await session.commit()

    async def offline() -> bool:
        return relay_events(await written(sessionmaker)) == [("r1", True), ("r1", False)]

    await eventually(offline, seconds=5, what="the sweep to take r1 offline")
    await eventually(lambda: not app_state.hub.relays, what="the hub to drop r1")
