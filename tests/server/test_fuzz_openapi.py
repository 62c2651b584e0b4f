"""Schemathesis over the whole API, on both databases: every operation, with valid and invalid
requests drawn from the app's own OpenAPI document, sent by a server administrator or a plain
member, must answer without a 5xx and as the document says (a documented status code, content
type, headers and body).

Bounded and deterministic for CI: ``WIREMESH_FUZZ_EXAMPLES`` examples per operation (default
8), derandomized. To search longer locally::

    WIREMESH_FUZZ_EXAMPLES=200 pytest tests/server/test_fuzz_openapi.py

Hypothesis runs in a worker thread and hands each request to the test's event loop, where the
in-process app (lifespan running, on the test's database) answers it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import checks
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, make_member, make_org, make_token, make_user
from wiremesh.server.config import Settings
from wiremesh.server.mail.api import get_mail_transport
from wiremesh.server.mail.transport import FakeTransport
from wiremesh.server.orgs.models import OrgRole

EXAMPLES = int(os.environ.get("WIREMESH_FUZZ_EXAMPLES", "8"))
REQUEST_TIMEOUT = 60.0
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No failed-authentication throttle in the way: random setup keys and relay tokens fail
    by the hundred, and a 429 for every later request would hide what they reach."""
    return settings.model_copy(update={"auth_failure_burst": 1_000_000})


async def _callers(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, list[str]]:
    """An org, and the tokens of a server administrator and of a plain member of it."""
    async with sessionmaker() as session:
        org = await make_org(session, network_cidr="100.64.0.0/24")
        admin = await make_user(session, server_admin=True)
        member = await make_user(session)
        await make_member(session, org, member, OrgRole.MEMBER)
        tokens = [await make_token(session, admin), await make_token(session, member)]
        await session.commit()
        return org.id, tokens


def _fuzz_operation(
    operation: Any,
    tokens: list[str],
    org_id: int,
    send: Callable[[dict[str, Any]], httpx.Response],
) -> None:
    own_org = {"org_id": org_id} if "{org_id}" in operation.path else None
    cases = st.one_of(
        operation.as_strategy(),
        operation.as_strategy(path_parameters=own_org),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, token=st.sampled_from(tokens))
    def run(case: Any, token: str) -> None:
        headers = auth(token)
        kwargs = case.as_transport_kwargs(base_url="http://wiremesh.test", headers=headers)
        response = send(kwargs)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


async def test_every_operation_answers_as_documented(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app.dependency_overrides[get_mail_transport] = FakeTransport
    schema = schemathesis.openapi.from_dict(app.openapi())
    loop = asyncio.get_running_loop()

    def send(kwargs: dict[str, Any]) -> httpx.Response:
        request = client.request(
            kwargs["method"],
            kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            json=kwargs.get("json"),
            content=kwargs.get("data"),
        )
        return asyncio.run_coroutine_threadsafe(request, loop).result(REQUEST_TIMEOUT)

    def fuzz_all() -> list[str]:
        failures: list[str] = []
        for result in schema.get_all_operations():
            operation = result.ok()
            # Fresh callers for each operation: an earlier one may have deleted them.
            callers = asyncio.run_coroutine_threadsafe(_callers(sessionmaker), loop)
            org_id, tokens = callers.result(REQUEST_TIMEOUT)
            try:
                _fuzz_operation(operation, tokens, org_id, send)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label}: {exc}")
        return failures

    failures = await asyncio.to_thread(fuzz_all)
    assert not failures, "\n\n".join(failures)
