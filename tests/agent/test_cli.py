"""`wiremesh agent ...`: argument handling and the clear errors (the happy path is e2e)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.agent.conftest import make_enrollment
from tests.support.ports import free_port
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.state import STATE_FILE, load_enrollment, save_enrollment
from wiremesh.cli import app


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("WIREMESH_"):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The commands configure the root logger for the process; undo it after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["agent", *args])


@pytest.fixture
def enrolled(tmp_path: Path) -> Path:
    keys = generate_keypair()
    save_enrollment(tmp_path, make_enrollment(keys.public_key), keys.private_key)
    return tmp_path


def test_up_with_an_unknown_backend_is_a_usage_error(enrolled: Path) -> None:
    result = invoke("up", "--state-dir", str(enrolled), "--backend", "wg")
    assert result.exit_code == 2
    assert "'wg' is not one of" in result.output


def test_up_before_enrolling_says_to_enroll(tmp_path: Path) -> None:
    result = invoke("up", "--state-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "not enrolled" in result.output
    assert "wiremesh agent enroll" in result.output


def test_up_takes_the_state_dir_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WIREMESH_AGENT_STATE_DIR", str(tmp_path / "from-env"))
    result = invoke("up")
    assert result.exit_code == 1
    assert str(tmp_path / "from-env") in result.output


def test_up_refuses_an_unknown_log_level(enrolled: Path) -> None:
    result = invoke("up", "--state-dir", str(enrolled), "--log-level", "loud")
    assert result.exit_code == 1
    assert "log level" in result.output


def test_enroll_reports_an_unreachable_server(tmp_path: Path) -> None:
    result = invoke(
        "enroll", "--server", "http://127.0.0.1:9", "--setup-key", "wmk_a_b", "--state-dir",
        str(tmp_path / "state"),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot reach the server at http://127.0.0.1:9" in result.output
    assert not (tmp_path / "state").exists()


def test_enroll_refuses_when_already_enrolled(enrolled: Path) -> None:
    result = invoke(
        "enroll", "--server", "http://127.0.0.1:9", "--setup-key", "wmk_a_b", "--state-dir",
        str(enrolled),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "already enrolled as laptop" in result.output
    assert "--force" in result.output


def test_enroll_takes_the_setup_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WIREMESH_SETUP_KEY", "wmk_a_b")
    result = invoke("enroll", "--server", "http://127.0.0.1:9", "--state-dir", str(tmp_path))
    assert "cannot reach the server" in result.output  # got past the missing option


def test_status_shows_the_enrollment_but_never_the_credential(enrolled: Path) -> None:
    result = invoke("status", "--state-dir", str(enrolled))
    assert result.exit_code == 0, result.output
    assert "100.64.0.7" in result.output
    assert "wmd_" not in result.output
    as_json = invoke("status", "--state-dir", str(enrolled), "--json")
    data = json.loads(as_json.stdout)
    assert data["device"]["virtual_ip"] == "100.64.0.7"
    assert "credential" not in data


def test_debug_logging_never_includes_frames_or_requests(tmp_path: Path) -> None:
    """websockets logs every frame at debug level, the auth frame's credential included."""
    invoke("up", "--state-dir", str(tmp_path), "--log-level", "debug")
    assert logging.getLogger("wiremesh.agent").isEnabledFor(logging.DEBUG)
    for name in ("websockets.client", "httpx", "httpcore"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)


def test_enroll_tries_every_server_given_and_names_each(tmp_path: Path) -> None:
    first, second = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    result = invoke(
        "enroll", "--server", first, "--server", second, "--setup-key", "wmk_a_b",
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "no server answered" in output
    assert f"cannot reach the server at {first}" in output
    assert f"cannot reach the server at {second}" in output
    assert not (tmp_path / "state").exists()


def test_enroll_refuses_a_server_given_twice(tmp_path: Path) -> None:
    result = invoke(
        "enroll", "--server", "http://a.test", "--server", "http://a.test/",
        "--setup-key", "wmk_a_b", "--state-dir", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "http://a.test is listed twice" in result.output


@pytest.fixture
def two_servers(enrolled: Path) -> Path:
    result = invoke("servers", "set", "https://a.example.com", "https://b.example.com/",
                    "--state-dir", str(enrolled))  # fmt: skip
    assert result.exit_code == 0, result.output
    return enrolled


def test_servers_set_stores_the_list_in_order(two_servers: Path) -> None:
    assert load_enrollment(two_servers).server_urls == (
        "https://a.example.com",
        "https://b.example.com",
    )
    listed = invoke("servers", "--state-dir", str(two_servers))
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines() == ["https://a.example.com", "https://b.example.com"]
    as_json = invoke("servers", "--state-dir", str(two_servers), "--json")
    assert json.loads(as_json.stdout) == ["https://a.example.com", "https://b.example.com"]


def test_status_lists_every_server(two_servers: Path) -> None:
    result = invoke("status", "--state-dir", str(two_servers))
    assert result.exit_code == 0, result.output
    assert "servers:    https://a.example.com\n            https://b.example.com\n" in (
        result.stdout
    )
    as_json = json.loads(invoke("status", "--state-dir", str(two_servers), "--json").stdout)
    assert as_json["server_urls"] == ["https://a.example.com", "https://b.example.com"]


@pytest.mark.parametrize(
    ("urls", "problem"),
    [
        (["https://a.example.com", "wiremesh.example.com"], "must look like"),
        (["https://a.example.com", "https://a.example.com/"], "listed twice"),
    ],
)
def test_servers_set_refuses_an_unusable_list_and_changes_nothing(
    two_servers: Path, urls: list[str], problem: str
) -> None:
    before = (two_servers / STATE_FILE).read_bytes()
    result = invoke("servers", "set", *urls, "--state-dir", str(two_servers))
    assert result.exit_code == 1
    assert problem in result.output
    assert (two_servers / STATE_FILE).read_bytes() == before


def test_servers_set_needs_a_url(two_servers: Path) -> None:
    result = invoke("servers", "set", "--state-dir", str(two_servers))
    assert result.exit_code == 2
    assert load_enrollment(two_servers).server_urls[0] == "https://a.example.com"


def test_servers_set_takes_the_state_dir_given_before_it(
    two_servers: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WIREMESH_AGENT_STATE_DIR", str(tmp_path / "elsewhere"))
    result = invoke("servers", "--state-dir", str(two_servers), "set", "https://c.example.com")
    assert result.exit_code == 0, result.output
    assert load_enrollment(two_servers).server_urls == ("https://c.example.com",)


def test_servers_before_enrolling_says_to_enroll(tmp_path: Path) -> None:
    for args in (["servers"], ["servers", "set", "https://a.example.com"]):
        result = invoke(*args, "--state-dir", str(tmp_path / "none"))
        assert result.exit_code == 1
        assert "wiremesh agent enroll" in result.output


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--mtu", "1279"), {}),
        (("--mtu", "9001"), {}),
        (("--keepalive", "-1"), {}),
        ((), {"WIREMESH_AGENT_KEEPALIVE": "3601"}),
        ((), {"WIREMESH_AGENT_MTU": "576"}),
    ],
)
def test_up_refuses_an_mtu_or_keepalive_out_of_range(
    enrolled: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    result = CliRunner().invoke(
        app, ["agent", "up", "--state-dir", str(enrolled), "--backend", "memory", *args], env=env
    )
    assert result.exit_code == 2, result.output
    option = "--mtu" if "--mtu" in args or "WIREMESH_AGENT_MTU" in env else "--keepalive"
    assert f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize(
    ("args", "env", "mtu", "keepalive"),
    [
        ((), {}, 1420, 25),
        (("--mtu", "1280", "--keepalive", "0"), {}, 1280, 0),
        ((), {"WIREMESH_AGENT_MTU": "9000", "WIREMESH_AGENT_KEEPALIVE": "60"}, 9000, 60),
    ],
)
def test_up_passes_the_mtu_and_keepalive_to_the_backend_and_the_paths(
    enrolled: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    env: dict[str, str],
    mtu: int,
    keepalive: int,
) -> None:
    import wiremesh.agent.cli as agent_cli
    from wiremesh.agent.memory import MemoryBackend
    from wiremesh.agent.runner import AgentRunner

    built: dict[str, object] = {}

    def fake_create_backend(name: str, **options: object) -> MemoryBackend:
        built.update(options)
        return MemoryBackend()

    async def fake_run(runner: AgentRunner, follower: object = None) -> None:
        built["paths_keepalive"] = runner.paths.keepalive

    monkeypatch.setattr(agent_cli, "create_backend", fake_create_backend)
    monkeypatch.setattr(agent_cli, "_run", fake_run)
    result = CliRunner().invoke(
        app, ["agent", "up", "--state-dir", str(enrolled), "--backend", "memory", *args], env=env
    )
    assert result.exit_code == 0, result.output
    assert built == {
        "interface": "wm0",
        "mtu": mtu,
        "keepalive": keepalive,
        "paths_keepalive": keepalive,
    }


@pytest.mark.parametrize("subdirectory", ["state", "my state"])
def test_enroll_with_a_state_dir_says_how_to_start_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subdirectory: str
) -> None:
    import shlex

    import wiremesh.agent.enroll as enroll_module
    from wiremesh.agent.state import Enrollment

    async def fake_enroll(directory: Path, *args: object, **kwargs: object) -> Enrollment:
        return make_enrollment(generate_keypair().public_key)

    # the command imports it when run (it is not loaded by `up`)
    monkeypatch.setattr(enroll_module, "enroll", fake_enroll)
    directory = tmp_path / subdirectory
    result = invoke(
        "enroll", "--server", "https://wm.example.com", "--setup-key", "wmk_x",
        "--state-dir", str(directory),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"`wiremesh agent up --state-dir {shlex.quote(str(directory))}`" in result.output
