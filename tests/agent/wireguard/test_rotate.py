"""`rotate-key` against the real server: the server, the files, a running agent, its peers."""

from __future__ import annotations

import asyncio
import stat
import sys
from pathlib import Path

import httpx
import pytest

from tests.agent.conftest import make_enrollment
from tests.factories import auth
from tests.support.live import LiveServer, OrgFixture, live_setup_key
from tests.support.ports import free_port
from tests.support.waiting import eventually
from wiremesh.agent.enroll import enroll
from wiremesh.agent.keys import generate_keypair, public_key_of
from wiremesh.agent.memory import MemoryBackend
from wiremesh.agent.runner import AgentRunner, Backoff
from wiremesh.agent.state import (
    KEY_FILE,
    STATE_FILE,
    Enrollment,
    load_enrollment,
    load_private_key,
    save_enrollment,
    set_server_urls,
)
from wiremesh.agent.wireguard.keywatch import KeyFollower
from wiremesh.agent.wireguard.rotate import RotateError, rotate_key


def snapshot(state_dir: Path) -> tuple[bytes, bytes]:
    return (state_dir / KEY_FILE).read_bytes(), (state_dir / STATE_FILE).read_bytes()


async def devices(server: LiveServer, org: OrgFixture) -> dict[str, dict[str, object]]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.get(
            f"/api/v1/orgs/{org.org_id}/devices", headers=auth(org.admin_token)
        )
    assert response.status_code == 200, response.text
    return {item["peer_id"]: item for item in response.json()}


def runner_for(enrollment: Enrollment, private_key: str, backend: object) -> AgentRunner:
    return AgentRunner(
        enrollment,
        private_key,
        backend,  # type: ignore[arg-type]
        listen_port=51820,
        backoff=Backoff(base=0.05, cap=0.2),
    )


async def test_a_rotated_key_reaches_the_server_the_files_the_agent_and_its_peers(
    live_server: LiveServer, org: OrgFixture, tmp_path: Path
) -> None:
    key = await live_setup_key(live_server, org)
    alpha_dir, beta_dir = tmp_path / "alpha", tmp_path / "beta"
    alpha = await enroll(alpha_dir, [live_server.base_url], key, "alpha")
    beta = await enroll(beta_dir, [live_server.base_url], key, "beta")
    old_private = load_private_key(alpha_dir, alpha)

    # alpha runs with the key follower; beta watches alpha as a peer.
    alpha_backend, beta_backend = MemoryBackend(), MemoryBackend()
    follower = KeyFollower(alpha_backend, alpha_dir, old_private, interval=0.05)
    alpha_runner = runner_for(alpha, old_private, follower)
    follower.on_rotated = lambda enrollment: setattr(alpha_runner, "enrollment", enrollment)
    beta_runner = runner_for(beta, load_private_key(beta_dir, beta), beta_backend)
    tasks = [
        asyncio.create_task(alpha_runner.run()),
        asyncio.create_task(beta_runner.run()),
        asyncio.create_task(follower.watch()),
    ]
    try:
        await eventually(lambda: alpha.device.public_key in beta_backend.state)
        assert alpha_backend.device is not None
        assert alpha_backend.device.private_key == old_private

        rotated = await rotate_key(alpha_dir)

        new_public = rotated.device.public_key
        assert new_public is not None
        assert new_public != alpha.device.public_key
        # The server has it.
        assert (await devices(live_server, org))[alpha.device.peer_id]["public_key"] == new_public
        # The files hold the new pair, owner-only, and belong together.
        assert load_enrollment(alpha_dir) == rotated
        new_private = load_private_key(alpha_dir, rotated)
        assert public_key_of(new_private) == new_public
        for name in (KEY_FILE, STATE_FILE):
            assert stat.S_IMODE((alpha_dir / name).stat().st_mode) == 0o600
        assert rotated.credential == alpha.credential
        # The running agent re-keyed its interface without a restart.
        await eventually(lambda: alpha_backend.device is not None
                         and alpha_backend.device.private_key == new_private)  # fmt: skip
        assert alpha_runner.enrollment.device.public_key == new_public
        assert alpha_runner.sessions == 1
        # The peer swapped the old key for the new one (same address, same endpoint).
        await eventually(lambda: new_public in beta_backend.state)
        assert alpha.device.public_key not in beta_backend.state
        assert beta_backend.state[new_public].allowed_ips == frozenset(
            {f"{alpha.device.virtual_ip}/32"}
        )
    finally:
        alpha_runner.stop()
        beta_runner.stop()
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_revoked_device_cannot_rotate_and_nothing_changes(
    live_server: LiveServer, org: OrgFixture, state_dir: Path
) -> None:
    enrollment = await enroll(
        state_dir, [live_server.base_url], await live_setup_key(live_server, org), "x"
    )
    device_id = (await devices(live_server, org))[enrollment.device.peer_id]["id"]
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        response = await client.post(
            f"/api/v1/orgs/{org.org_id}/devices/{device_id}/revoke", headers=auth(org.admin_token)
        )
    assert response.status_code == 200, response.text
    before = snapshot(state_dir)
    with pytest.raises(RotateError, match=r"revoked.*nothing changed"):
        await rotate_key(state_dir)
    assert snapshot(state_dir) == before
    server_key = (await devices(live_server, org))[enrollment.device.peer_id]["public_key"]
    assert server_key == enrollment.device.public_key


async def test_an_unreachable_server_changes_nothing(tmp_path: Path) -> None:
    keys = generate_keypair()
    enrollment = make_enrollment(keys.public_key, server_urls=["http://127.0.0.1:9"])
    save_enrollment(tmp_path, enrollment, keys.private_key)
    before = snapshot(tmp_path)
    with pytest.raises(RotateError, match=r"cannot reach the server at http://127\.0\.0\.1:9"):
        await rotate_key(tmp_path)
    assert snapshot(tmp_path) == before


async def test_the_new_key_goes_to_the_first_server_that_answers(
    live_server: LiveServer, org: OrgFixture, state_dir: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    enrollment = await enroll(
        state_dir, [down, live_server.base_url], await live_setup_key(live_server, org), "x"
    )
    rotated = await rotate_key(state_dir)
    assert rotated.server_urls == (down, live_server.base_url)
    server_key = (await devices(live_server, org))[enrollment.device.peer_id]["public_key"]
    assert server_key == rotated.device.public_key != enrollment.device.public_key


async def test_no_server_answering_changes_nothing_and_names_each(tmp_path: Path) -> None:
    keys = generate_keypair()
    downs = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    save_enrollment(tmp_path, make_enrollment(keys.public_key, server_urls=downs), keys.private_key)
    before = snapshot(tmp_path)
    with pytest.raises(RotateError) as raised:
        await rotate_key(tmp_path)
    message = str(raised.value)
    assert message.startswith("no server answered: ")
    assert message.endswith("; nothing changed")
    assert all(f"cannot reach the server at {down}" in message for down in downs)
    assert snapshot(tmp_path) == before


class ServersSetMeanwhile(httpx.AsyncBaseTransport):
    """The real server, with a `servers set` run while the key upload is in flight."""

    def __init__(self, state_dir: Path, servers: list[str]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.state_dir = state_dir
        self.servers = servers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        set_server_urls(self.state_dir, self.servers)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_server_list_set_during_the_rotation_is_kept(
    live_server: LiveServer, org: OrgFixture, state_dir: Path
) -> None:
    await enroll(state_dir, [live_server.base_url], await live_setup_key(live_server, org), "x")
    servers = [live_server.base_url, "https://replica.example.com"]
    transport = ServersSetMeanwhile(state_dir, servers)
    rotated = await rotate_key(state_dir, transport=transport)
    assert load_enrollment(state_dir) == rotated
    assert rotated.server_urls == tuple(servers)
    assert public_key_of(load_private_key(state_dir, rotated)) == rotated.device.public_key


async def test_rotating_before_enrolling_says_to_enroll(tmp_path: Path) -> None:
    with pytest.raises(RotateError, match="not enrolled"):
        await rotate_key(tmp_path)


async def test_the_rotate_key_command(
    live_server: LiveServer, org: OrgFixture, state_dir: Path
) -> None:
    enrollment = await enroll(
        state_dir, [live_server.base_url], await live_setup_key(live_server, org), "x"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wiremesh.agent", "rotate-key", "--state-dir", str(state_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    rotated = load_enrollment(state_dir)
    assert rotated.device.public_key != enrollment.device.public_key
    assert f"New public key: {rotated.device.public_key}" in output
    assert load_private_key(state_dir, rotated) not in output
    assert enrollment.credential not in output
