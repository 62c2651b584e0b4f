"""The running agent follows its private key file (no server: the files are written here)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytest

from tests.agent.conftest import make_enrollment
from wiremesh.agent.backend import DeviceConfig
from wiremesh.agent.keys import KeyPair, generate_keypair
from wiremesh.agent.memory import MemoryBackend
from wiremesh.agent.state import KEY_FILE, Enrollment, save_enrollment, write_private_file
from wiremesh.agent.wireguard import keywatch
from wiremesh.agent.wireguard.keywatch import KeyFollower

ADDRESS = ipaddress.ip_interface("100.64.0.7/24")


def enrolled(state_dir: Path) -> tuple[Enrollment, KeyPair]:
    keys = generate_keypair()
    enrollment = make_enrollment(keys.public_key)
    save_enrollment(state_dir, enrollment, keys.private_key)
    return enrollment, keys


def rotate_on_disk(state_dir: Path, enrollment: Enrollment) -> tuple[Enrollment, KeyPair]:
    keys = generate_keypair()
    device = enrollment.device.model_copy(update={"public_key": keys.public_key})
    rotated = enrollment.model_copy(update={"device": device})
    save_enrollment(state_dir, rotated, keys.private_key)
    return rotated, keys


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


async def test_setup_always_uses_the_newest_key(state_dir: Path) -> None:
    _enrollment, keys = enrolled(state_dir)
    inner = MemoryBackend()
    follower = KeyFollower(inner, state_dir, keys.private_key)
    stale = DeviceConfig(ADDRESS, generate_keypair().private_key, 51820)
    await follower.setup(stale)  # e.g. the session loop, holding an older key
    assert inner.device is not None
    assert inner.device.private_key == keys.private_key
    assert follower.listen_port == 51820


async def test_a_rotated_key_is_put_on_the_interface_and_reported(state_dir: Path) -> None:
    enrollment, keys = enrolled(state_dir)
    inner = MemoryBackend()
    seen: list[Enrollment] = []
    follower = KeyFollower(inner, state_dir, keys.private_key, on_rotated=seen.append)
    await follower.setup(DeviceConfig(ADDRESS, keys.private_key, 51820))
    assert not await follower.check()  # nothing changed yet

    rotated, new_keys = rotate_on_disk(state_dir, enrollment)
    assert await follower.check()
    assert inner.device == DeviceConfig(ADDRESS, new_keys.private_key, 51820)
    assert seen == [rotated]
    assert follower.rotations == 1
    assert not await follower.check()  # once


async def test_a_half_written_rotation_waits_for_the_state_file(state_dir: Path) -> None:
    enrollment, keys = enrolled(state_dir)
    inner = MemoryBackend()
    follower = KeyFollower(inner, state_dir, keys.private_key)
    await follower.setup(DeviceConfig(ADDRESS, keys.private_key, 51820))
    new_keys = generate_keypair()
    write_private_file(state_dir / KEY_FILE, (new_keys.private_key + "\n").encode())
    assert not await follower.check()  # the key no longer matches the state file: wait
    assert inner.device is not None
    assert inner.device.private_key == keys.private_key
    device = enrollment.device.model_copy(update={"public_key": new_keys.public_key})
    save_enrollment(
        state_dir, enrollment.model_copy(update={"device": device}), new_keys.private_key
    )
    assert await follower.check()
    assert inner.device.private_key == new_keys.private_key


async def test_a_lasting_mismatch_is_reported_once(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _enrollment, keys = enrolled(state_dir)
    follower = KeyFollower(MemoryBackend(), state_dir, keys.private_key)
    write_private_file(state_dir / KEY_FILE, (generate_keypair().private_key + "\n").encode())
    monkeypatch.setattr(keywatch, "MISMATCH_WARNING_AFTER", 0.0)
    with caplog.at_level(logging.WARNING, logger="wiremesh.agent"):
        for _ in range(3):
            await follower.check()
    warnings = [r for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(warnings) == 1
    assert keys.private_key not in caplog.text


class FailingOnce(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    async def setup(self, device: DeviceConfig) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("wg set failed")
        await super().setup(device)


async def test_a_key_that_could_not_be_applied_is_tried_again(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enrollment, keys = enrolled(state_dir)
    inner = FailingOnce()
    follower = KeyFollower(inner, state_dir, keys.private_key)
    await follower.setup(DeviceConfig(ADDRESS, keys.private_key, 51820))
    _rotated, new_keys = rotate_on_disk(state_dir, enrollment)
    inner.fail_next = True
    with caplog.at_level(logging.ERROR, logger="wiremesh.agent"):
        assert not await follower.check()
    assert "could not put the new private key on WireGuard: wg set failed" in caplog.text
    assert await follower.check()
    assert inner.device is not None
    assert inner.device.private_key == new_keys.private_key


async def test_before_setup_a_new_key_is_only_remembered(state_dir: Path) -> None:
    enrollment, keys = enrolled(state_dir)
    inner = MemoryBackend()
    follower = KeyFollower(inner, state_dir, keys.private_key)
    _rotated, new_keys = rotate_on_disk(state_dir, enrollment)
    assert await follower.check()
    assert inner.device is None
    await follower.setup(DeviceConfig(ADDRESS, keys.private_key, 51820))
    assert inner.device is not None
    assert inner.device.private_key == new_keys.private_key


async def test_teardown_reaches_the_backend(state_dir: Path) -> None:
    _enrollment, keys = enrolled(state_dir)
    inner = MemoryBackend()
    follower = KeyFollower(inner, state_dir, keys.private_key)
    await follower.setup(DeviceConfig(ADDRESS, keys.private_key, 51820))
    await follower.teardown()
    assert inner.torn_down
