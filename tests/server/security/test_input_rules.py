"""One set of input rules for every field: PostgreSQL and SQLite refuse the same input, as a
422 before any SQL runs (issue #12: a NUL in a setup-key name was a 500 on PostgreSQL and
4,096 characters were stored on SQLite)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.devices.models import SetupKey
from wiremesh.server.orgs.models import OrgRole

BAD_NAMES = [
    "a\x00b",  # PostgreSQL refuses NUL in text: it was a 500
    "two\nlines",
    "tab\there",
    "bell\x07",
    "x" * 65,  # VARCHAR(64): SQLite stored it, PostgreSQL failed with a 500
    "x" * 4096,
    "   ",
]


async def _admin_of_an_org(session: AsyncSession) -> tuple[int, str]:
    owner = await make_user(session)
    org = await make_org(session)
    await make_member(session, org, owner, OrgRole.OWNER)
    token = await make_token(session, owner)
    await session.commit()
    return org.id, token


async def _key_count(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(SetupKey))).scalar_one()


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_a_setup_key_name_follows_the_name_rules(
    name: str, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    org_id, token = await _admin_of_an_org(session)
    response = await client.post(
        f"/api/v1/orgs/{org_id}/setup-keys", json={"name": name}, headers=auth(token)
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == ["name"]
    assert await _key_count(session) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k", "user_id": 2**40},
        {"name": "k", "user_id": 2**31},
        {"name": "k", "usage_limit": 2**40, "reusable": True},
        {"name": "k", "expires_in_seconds": 2**63},
    ],
    ids=lambda body: next(key for key in body if key != "name"),
)
async def test_setup_key_integers_fit_their_columns(
    body: dict[str, Any], client: httpx.AsyncClient, session: AsyncSession
) -> None:
    org_id, token = await _admin_of_an_org(session)
    response = await client.post(
        f"/api/v1/orgs/{org_id}/setup-keys", json=body, headers=auth(token)
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert await _key_count(session) == 0


async def test_an_enrollment_key_with_a_nul_is_refused_before_sql(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/enroll", json={"setup_key": "wmk_\x00abc_def", "hostname": "h"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


async def test_a_valid_setup_key_name_is_trimmed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    org_id, token = await _admin_of_an_org(session)
    response = await client.post(
        f"/api/v1/orgs/{org_id}/setup-keys", json={"name": "  laptops  "}, headers=auth(token)
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "laptops"
