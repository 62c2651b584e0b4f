"""`wiremesh agent up` with real backends and `wiremesh agent rotate-key`: options and errors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.agent.conftest import make_enrollment
from wiremesh.agent import cli as agent_cli
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.state import KEY_FILE, save_enrollment, write_private_file
from wiremesh.agent.wireguard.prereq import NEED_ROOT, NEED_WG
from wiremesh.cli import app


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("WIREMESH_"):
            monkeypatch.delenv(key)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["agent", *args])


@pytest.fixture
def enrolled(tmp_path: Path) -> Path:
    keys = generate_keypair()
    save_enrollment(tmp_path, make_enrollment(keys.public_key), keys.private_key)
    return tmp_path


@dataclass
class Prerequisites:
    """Stands in for the system check: reports ``missing``, records what it was asked."""

    missing: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def __call__(self, name: str) -> list[str]:
        self.asked.append(str(name))
        return list(self.missing)


@pytest.fixture
def prerequisites(monkeypatch: pytest.MonkeyPatch) -> Prerequisites:
    fake = Prerequisites()
    monkeypatch.setattr(agent_cli, "missing_prerequisites", fake)
    return fake


def test_everything_missing_is_one_message(enrolled: Path, prerequisites: Prerequisites) -> None:
    prerequisites.missing = [NEED_ROOT, NEED_WG]
    result = invoke("up", "--state-dir", str(enrolled), "--backend", "kernel")
    assert result.exit_code == 1
    assert prerequisites.asked == ["kernel"]
    text = " ".join(result.output.split())
    assert f"error: the kernel backend cannot run here; missing: {NEED_ROOT}; {NEED_WG}" in text


def test_auto_is_the_default_backend(enrolled: Path, prerequisites: Prerequisites) -> None:
    prerequisites.missing = [NEED_ROOT]
    result = invoke("up", "--state-dir", str(enrolled))
    assert result.exit_code == 1
    assert prerequisites.asked == ["auto"]
    assert "the auto backend cannot run here" in result.output


def test_the_backend_can_come_from_the_environment(
    enrolled: Path, prerequisites: Prerequisites, monkeypatch: pytest.MonkeyPatch
) -> None:
    prerequisites.missing = [NEED_ROOT]
    monkeypatch.setenv("WIREMESH_AGENT_BACKEND", "wireguard-go")
    invoke("up", "--state-dir", str(enrolled))
    assert prerequisites.asked == ["wireguard-go"]


def test_the_state_is_checked_before_the_system(
    tmp_path: Path, prerequisites: Prerequisites
) -> None:
    prerequisites.missing = [NEED_ROOT]
    result = invoke("up", "--state-dir", str(tmp_path), "--backend", "kernel")
    assert result.exit_code == 1
    assert "not enrolled" in result.output
    assert prerequisites.asked == []


def test_an_unusable_interface_name_is_refused(
    enrolled: Path, prerequisites: Prerequisites
) -> None:
    result = invoke("up", "--state-dir", str(enrolled), "--backend", "kernel", "--interface", "-x")
    assert result.exit_code == 1
    assert "'-x' is not a usable interface name" in result.output


def test_a_key_file_from_an_interrupted_rotation_points_to_rotate_key(enrolled: Path) -> None:
    write_private_file(enrolled / KEY_FILE, (generate_keypair().private_key + "\n").encode())
    result = invoke("up", "--state-dir", str(enrolled), "--backend", "memory")
    assert result.exit_code == 1
    assert "running it again repairs" in " ".join(result.output.split())


def test_rotate_key_before_enrolling_says_to_enroll(tmp_path: Path) -> None:
    result = invoke("rotate-key", "--state-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "not enrolled" in result.output


def test_rotate_key_with_the_server_away_changes_nothing(tmp_path: Path) -> None:
    keys = generate_keypair()
    save_enrollment(tmp_path, make_enrollment(keys.public_key, server_urls=["http://127.0.0.1:9"]),
                    keys.private_key)  # fmt: skip
    before = (tmp_path / KEY_FILE).read_bytes()
    result = invoke("rotate-key", "--state-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "nothing changed" in result.output
    assert (tmp_path / KEY_FILE).read_bytes() == before
