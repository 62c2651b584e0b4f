"""Enrollment against the real app: what is sent, what is stored, every refusal, and the
servers tried in turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.live import LiveServer, OrgFixture, create_setup_key
from tests.support.ports import free_port
from wiremesh.agent.enroll import EnrollError, enroll
from wiremesh.agent.keys import public_key_of
from wiremesh.agent.state import LISTEN_PORTS, load_enrollment, load_private_key
from wiremesh.server.devices.models import VirtualIPMapping

SERVER = "http://wiremesh.test"


class RecordingTransport(httpx.AsyncBaseTransport):
    """The app's ASGI transport for every host, remembering each request's host and body.

    Hosts in ``failing`` answer 503, as a load balancer without a live backend does;
    hosts in ``unreachable`` refuse the connection.
    """

    def __init__(
        self,
        app: FastAPI,
        failing: frozenset[str] = frozenset(),
        unreachable: frozenset[str] = frozenset(),
    ) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.failing = failing
        self.unreachable = unreachable
        self.bodies: list[bytes] = []
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(await request.aread())
        self.hosts.append(request.url.host)
        if request.url.host in self.unreachable:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if request.url.host in self.failing:
            return httpx.Response(503, text="<html>no healthy upstream")
        return await self.inner.handle_async_request(request)


@pytest.fixture
def transport(app: FastAPI) -> RecordingTransport:
    return RecordingTransport(app)


@pytest.fixture
async def setup_key(client: httpx.AsyncClient, org: OrgFixture) -> str:
    return await create_setup_key(client, org)


async def test_enroll_registers_the_public_key_and_stores_the_state(
    transport: RecordingTransport,
    setup_key: str,
    state_dir: Path,
    org: OrgFixture,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    enrollment = await enroll(state_dir, [SERVER + "/"], setup_key, "laptop", transport=transport)
    assert load_enrollment(state_dir) == enrollment
    assert enrollment.server_urls == (SERVER,)
    assert enrollment.device.hostname == "laptop"
    assert enrollment.listen_port in LISTEN_PORTS  # the device's own, drawn at enrollment
    assert enrollment.network.org_id == org.org_id
    assert enrollment.credential.startswith("wmd_")
    private_key = load_private_key(state_dir, enrollment)
    public_key = public_key_of(private_key)
    assert enrollment.device.public_key == public_key
    async with sessionmaker() as session:
        device = await session.get(VirtualIPMapping, enrollment.device.id)
        assert device is not None
        assert device.public_key == public_key
    (body,) = transport.bodies
    assert public_key.encode() in body
    assert private_key.encode() not in body


async def test_a_bad_setup_key_is_refused_with_the_servers_reason_and_nothing_stored(
    transport: RecordingTransport, state_dir: Path, org: OrgFixture
) -> None:
    with pytest.raises(EnrollError, match=r"refused.*\(invalid_setup_key\)"):
        await enroll(state_dir, [SERVER], "wmk_nope_nope", "laptop", transport=transport)
    assert not await asyncio.to_thread(state_dir.exists)


async def test_an_invalid_hostname_is_explained_by_the_server(
    transport: RecordingTransport, setup_key: str, state_dir: Path
) -> None:
    with pytest.raises(EnrollError, match=r"hostname.*\(validation_error\)"):
        await enroll(state_dir, [SERVER], setup_key, "-bad name-", transport=transport)


async def test_an_enrolled_device_refuses_to_enroll_again_unless_forced(
    transport: RecordingTransport, setup_key: str, state_dir: Path
) -> None:
    first = await enroll(state_dir, [SERVER], setup_key, "laptop", transport=transport)
    with pytest.raises(EnrollError, match=r"already enrolled as laptop.*--force"):
        await enroll(state_dir, [SERVER], setup_key, "laptop", transport=transport)
    assert len(transport.bodies) == 1  # refused before asking the server
    second = await enroll(state_dir, [SERVER], setup_key, "laptop", force=True, transport=transport)
    assert second.device.id != first.device.id
    assert second.device.public_key != first.device.public_key
    assert load_enrollment(state_dir) == second
    assert public_key_of(load_private_key(state_dir, second)) == second.device.public_key


async def test_an_unreachable_server_is_a_clear_error(state_dir: Path) -> None:
    with pytest.raises(EnrollError, match=r"cannot reach the server at http://127\.0\.0\.1:9"):
        await enroll(state_dir, ["http://127.0.0.1:9"], "wmk_x_y", "laptop")
    assert not await asyncio.to_thread(state_dir.exists)


async def test_something_that_is_not_a_wiremesh_server_is_named_as_such(state_dir: Path) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404, text="<html>nope"))
    with pytest.raises(EnrollError, match=r"unexpected HTTP 404.*wiremesh server"):
        await enroll(state_dir, [SERVER], "wmk_x_y", "laptop", transport=transport)


async def test_a_server_that_is_down_is_skipped_and_every_server_is_stored(
    live_server: LiveServer, setup_key: str, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    enrollment = await enroll(state_dir, [down, live_server.base_url + "/"], setup_key, "laptop")
    assert enrollment.server_urls == (down, live_server.base_url)
    assert load_enrollment(state_dir) == enrollment
    assert f"cannot reach the server at {down}" in caplog.text
    assert f"trying {live_server.base_url}" in caplog.text


async def test_a_failing_server_is_skipped(app: FastAPI, setup_key: str, state_dir: Path) -> None:
    transport = RecordingTransport(app, failing=frozenset({"first.test"}))
    servers = ["http://first.test", "http://second.test"]
    enrollment = await enroll(state_dir, servers, setup_key, "laptop", transport=transport)
    assert transport.hosts == ["first.test", "second.test"]
    assert enrollment.server_urls == tuple(servers)


async def test_a_refusal_is_final_and_the_next_server_is_not_asked(
    transport: RecordingTransport, state_dir: Path, org: OrgFixture
) -> None:
    servers = ["http://first.test", "http://second.test"]
    with pytest.raises(EnrollError, match=r"refused.*\(invalid_setup_key\)"):
        await enroll(state_dir, servers, "wmk_nope_nope", "laptop", transport=transport)
    assert transport.hosts == ["first.test"]
    assert not await asyncio.to_thread(state_dir.exists)


async def test_when_no_server_answers_each_one_is_named(app: FastAPI, state_dir: Path) -> None:
    transport = RecordingTransport(
        app, failing=frozenset({"failing.test"}), unreachable=frozenset({"down.test"})
    )
    servers = ["http://failing.test", "http://down.test"]
    with pytest.raises(EnrollError) as raised:
        await enroll(state_dir, servers, "wmk_x_y", "laptop", transport=transport)
    assert str(raised.value) == (
        "no server answered: the server at http://failing.test failed with HTTP 503; "
        "cannot reach the server at http://down.test: [Errno 111] Connection refused"
    )
    assert not await asyncio.to_thread(state_dir.exists)


@pytest.mark.parametrize(
    ("servers", "problem"),
    [
        ([], "at least one server URL"),
        (["http://a.test", "http://a.test/"], "listed twice"),
        (["http://a.test", "ftp://b.test"], "must look like"),
    ],
)
async def test_unusable_server_lists_are_refused_before_any_server_is_asked(
    transport: RecordingTransport, state_dir: Path, servers: list[str], problem: str
) -> None:
    with pytest.raises(EnrollError, match=problem):
        await enroll(state_dir, servers, "wmk_x_y", "laptop", transport=transport)
    assert transport.hosts == []


async def test_an_unusable_state_dir_fails_before_the_server_is_asked(
    transport: RecordingTransport, setup_key: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EnrollError, match="is not a directory"):
        await enroll(blocker / "state", [SERVER], setup_key, "laptop", transport=transport)
    assert transport.bodies == []
