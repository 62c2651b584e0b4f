"""The enrollment on disk: 0600 from creation, atomic replacement, consistency checks."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from tests.agent.conftest import make_enrollment
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.state import (
    DEFAULT_STATE_DIR,
    KEY_FILE,
    LISTEN_PORTS,
    LOCK_FILE,
    STATE_DIR_ENV,
    STATE_FILE,
    NotEnrolled,
    StateError,
    ensure_listen_port,
    load_enrollment,
    load_private_key,
    resolve_state_dir,
    save_enrollment,
    set_server_urls,
    state_lock,
    state_summary,
    write_private_file,
)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable: the code must not rely on it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_saved_state_round_trips_and_is_owner_only(tmp_path: Path) -> None:
    keys = generate_keypair()
    enrollment = make_enrollment(keys.public_key)
    state_dir = tmp_path / "state"
    save_enrollment(state_dir, enrollment, keys.private_key)
    assert mode(state_dir) == 0o700
    assert mode(state_dir / STATE_FILE) == 0o600
    assert mode(state_dir / KEY_FILE) == 0o600
    assert load_enrollment(state_dir) == enrollment
    assert load_private_key(state_dir, enrollment) == keys.private_key
    assert (state_dir / KEY_FILE).read_text() == keys.private_key + "\n"
    assert keys.private_key not in (state_dir / STATE_FILE).read_text()
    assert sorted(p.name for p in state_dir.iterdir()) == [STATE_FILE, KEY_FILE]


@pytest.mark.usefixtures("open_umask")
def test_replacing_a_file_keeps_it_owner_only_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o644)
    write_private_file(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600  # a new inode, created 0600, not the old one chmod-ed
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_a_failed_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "secret"
    target.write_text("old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_private_file(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_saving_refuses_a_private_key_of_another_device(tmp_path: Path) -> None:
    enrollment = make_enrollment(generate_keypair().public_key)
    with pytest.raises(ValueError, match="does not match"):
        save_enrollment(tmp_path, enrollment, generate_keypair().private_key)
    assert list(tmp_path.iterdir()) == []


def test_no_state_means_not_enrolled(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolled, match="wiremesh agent enroll"):
        load_enrollment(tmp_path)


def test_a_damaged_state_file_says_how_to_recover(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(StateError, match=r"damaged.*--force"):
        load_enrollment(tmp_path)


def test_a_state_file_of_another_format_is_refused(tmp_path: Path) -> None:
    keys = generate_keypair()
    data = json.loads(make_enrollment(keys.public_key).model_dump_json())
    data["format"] = 99
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    with pytest.raises(StateError, match="format 99"):
        load_enrollment(tmp_path)


def test_a_private_key_that_does_not_match_is_detected(tmp_path: Path) -> None:
    keys = generate_keypair()
    enrollment = make_enrollment(keys.public_key)
    save_enrollment(tmp_path, enrollment, keys.private_key)
    write_private_file(tmp_path / KEY_FILE, generate_keypair().private_key.encode())
    with pytest.raises(StateError, match="does not belong"):
        load_private_key(tmp_path, enrollment)


def test_a_missing_or_garbled_private_key_is_an_error(tmp_path: Path) -> None:
    keys = generate_keypair()
    enrollment = make_enrollment(keys.public_key)
    with pytest.raises(StateError, match="missing"):
        load_private_key(tmp_path, enrollment)
    write_private_file(tmp_path / KEY_FILE, b"garbage")
    with pytest.raises(StateError, match="does not hold a WireGuard private key"):
        load_private_key(tmp_path, enrollment)


def test_the_credential_is_in_neither_repr_nor_summary() -> None:
    enrollment = make_enrollment(generate_keypair().public_key)
    assert enrollment.credential not in repr(enrollment)
    summary = state_summary(enrollment)
    assert "credential" not in summary
    assert enrollment.credential not in json.dumps(summary)


def test_state_dir_flag_beats_environment_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    assert resolve_state_dir(None) == DEFAULT_STATE_DIR
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "env"))
    assert resolve_state_dir(None) == tmp_path / "env"
    assert resolve_state_dir(tmp_path / "flag") == tmp_path / "flag"


def format_1_state(public_key: str) -> dict[str, object]:
    """The state file as agents with a single server URL wrote it."""
    return {
        "format": 1,
        "server_url": "https://wiremesh.example.com",
        "credential": "wmd_abc_secretsecret",
        "device": {
            "id": 3, "org_id": 1, "user_id": 2, "peer_id": "peer-0123456789",
            "hostname": "laptop", "virtual_ip": "100.64.0.7", "public_key": public_key,
        },
        "network": {"org_id": 1, "org_name": "acme", "network": "100.64.0.0/24"},
        "enrolled_at": "2025-01-02T03:04:05Z",
    }  # fmt: skip


def test_a_format_1_state_file_is_read_as_a_list_of_one_and_written_as_format_2(
    tmp_path: Path,
) -> None:
    keys = generate_keypair()
    write_private_file(tmp_path / KEY_FILE, (keys.private_key + "\n").encode())
    old = json.dumps(format_1_state(keys.public_key), indent=2).encode()
    write_private_file(tmp_path / STATE_FILE, old)

    enrollment = load_enrollment(tmp_path)
    assert enrollment == make_enrollment(keys.public_key)
    assert enrollment.server_urls == ("https://wiremesh.example.com",)
    assert enrollment.format == 2
    assert load_private_key(tmp_path, enrollment) == keys.private_key
    assert (tmp_path / STATE_FILE).read_bytes() == old  # reading never writes

    set_server_urls(tmp_path, ["https://wiremesh.example.com", "https://replica.example.com"])
    stored = json.loads((tmp_path / STATE_FILE).read_text())
    assert stored["format"] == 2
    assert stored["server_urls"] == ["https://wiremesh.example.com", "https://replica.example.com"]
    assert "server_url" not in stored
    assert load_enrollment(tmp_path).credential == "wmd_abc_secretsecret"


def test_a_format_1_state_file_without_its_url_is_damaged(tmp_path: Path) -> None:
    data = format_1_state(generate_keypair().public_key)
    del data["server_url"]
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    with pytest.raises(StateError, match=r"damaged \(server_urls: Field required\)"):
        load_enrollment(tmp_path)


@pytest.mark.parametrize(
    ("server_urls", "problem"),
    [([], "at least one"), (["http://a.test", "http://a.test/"], "listed twice")],
)
def test_a_state_file_with_an_unusable_server_list_is_damaged(
    tmp_path: Path, server_urls: list[str], problem: str
) -> None:
    data = json.loads(make_enrollment(generate_keypair().public_key).model_dump_json())
    data["server_urls"] = server_urls
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    with pytest.raises(StateError, match=f"damaged.*{problem}"):
        load_enrollment(tmp_path)


@pytest.mark.usefixtures("open_umask")
def test_setting_the_servers_replaces_only_the_list(tmp_path: Path) -> None:
    keys = generate_keypair()
    enrollment = make_enrollment(keys.public_key)
    save_enrollment(tmp_path, enrollment, keys.private_key)
    key_before = (tmp_path / KEY_FILE).read_bytes()

    updated = set_server_urls(tmp_path, ["https://b.example.com/", " http://a.example.com:8080"])

    assert updated.server_urls == ("https://b.example.com", "http://a.example.com:8080")
    assert load_enrollment(tmp_path) == updated
    assert updated.model_copy(update={"server_urls": enrollment.server_urls}) == enrollment
    assert (tmp_path / KEY_FILE).read_bytes() == key_before
    assert mode(tmp_path / STATE_FILE) == 0o600
    assert mode(tmp_path / LOCK_FILE) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, STATE_FILE, KEY_FILE]


@pytest.mark.parametrize(
    ("urls", "problem"),
    [([], "at least one"), (["http://a.test", "http://a.test/"], "listed twice"),
     (["http://a.test", "a.test"], "must look like")],
)  # fmt: skip
def test_an_unusable_server_list_is_refused_and_nothing_is_written(
    tmp_path: Path, urls: list[str], problem: str
) -> None:
    keys = generate_keypair()
    save_enrollment(tmp_path, make_enrollment(keys.public_key), keys.private_key)
    before = (tmp_path / STATE_FILE).read_bytes()
    with pytest.raises(StateError, match=problem):
        set_server_urls(tmp_path, urls)
    assert (tmp_path / STATE_FILE).read_bytes() == before


def test_setting_the_servers_before_enrolling_says_to_enroll(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolled, match="wiremesh agent enroll"):
        set_server_urls(tmp_path / "missing", ["http://a.test"])
    with pytest.raises(NotEnrolled, match="wiremesh agent enroll"):
        set_server_urls(tmp_path, ["http://a.test"])


def test_a_change_waits_for_the_state_lock(tmp_path: Path) -> None:
    keys = generate_keypair()
    save_enrollment(tmp_path, make_enrollment(keys.public_key), keys.private_key)
    with ThreadPoolExecutor(1) as pool:
        with state_lock(tmp_path):
            setting = pool.submit(set_server_urls, tmp_path, ["http://b.test"])
            with pytest.raises(FutureTimeout):
                setting.result(timeout=0.3)  # blocked as long as another holds the lock
            assert load_enrollment(tmp_path).server_urls == ("https://wiremesh.example.com",)
        assert setting.result(timeout=5).server_urls == ("http://b.test",)


def test_an_enrollment_without_a_port_gets_one_drawn_once_and_kept(tmp_path: Path) -> None:
    """Older state files have no port: the first start draws one, later starts keep it, so
    NATs and peers see the same port across restarts."""
    keys = generate_keypair()
    enrollment = make_enrollment(keys.public_key)
    assert enrollment.listen_port is None
    save_enrollment(tmp_path, enrollment, keys.private_key)
    port = ensure_listen_port(tmp_path)
    assert port in LISTEN_PORTS
    assert load_enrollment(tmp_path).listen_port == port
    assert ensure_listen_port(tmp_path) == port
    assert mode(tmp_path / STATE_FILE) == 0o600
