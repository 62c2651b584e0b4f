"""`wiremesh server`: first-start bootstrap, uvicorn settings, and a real run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.cli.operator_cli import invoke, point_cli_at
from tests.support.ports import free_port
from wiremesh.cli import server as server_cli
from wiremesh.server.config import Settings

TOKEN_RE = re.compile(r"wm_[0-9a-f]{12}_[A-Za-z0-9_-]+")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> list[uvicorn.Config]:
    """Stop at the point where uvicorn would start serving; keep what it was given."""
    point_cli_at(monkeypatch, settings)
    configs: list[uvicorn.Config] = []
    monkeypatch.setattr(server_cli, "serve_forever", configs.append)
    return configs


def test_first_start_bootstraps_an_admin_once(served: list[uvicorn.Config]) -> None:
    first = invoke("server", "--port", "9123")
    assert first.exit_code == 0, first.output
    assert "listening on http://127.0.0.1:9123" in first.stdout
    assert "admin@localhost" in first.stdout
    assert len(TOKEN_RE.findall(first.stdout)) == 1

    second = invoke("server", "--port", "9123")
    assert second.exit_code == 0, second.output
    assert "listening on http://127.0.0.1:9123" in second.stdout
    assert TOKEN_RE.search(second.stdout) is None
    assert len(served) == 2


def test_uvicorn_is_configured_from_settings_and_flags(served: list[uvicorn.Config]) -> None:
    assert invoke("admin", "bootstrap").exit_code == 0
    result = invoke("server", "--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    assert TOKEN_RE.search(result.stdout) is None
    config = served[-1]
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    assert config.ws in {"websockets-sansio", "websockets"}
    assert config.ws == server_cli.websocket_implementation()
    assert config.proxy_headers is False
    assert config.log_level == "info"
    assert config.loop == "uvloop"


def test_a_bad_log_level_is_refused(
    served: list[uvicorn.Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WIREMESH_LOG_LEVEL", "loud")
    result = invoke("server")
    assert result.exit_code == 1
    assert "log level" in result.stderr
    assert served == []


def test_ipv6_hosts_are_bracketed_in_the_url() -> None:
    assert server_cli.server_url("::1", 80) == "http://[::1]:80"
    assert server_cli.server_url("127.0.0.1", 80) == "http://127.0.0.1:80"


def test_the_server_really_serves(settings: Settings, tmp_path: Path) -> None:
    """Start `wiremesh server` as a process; its printed token works against its API."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WIREMESH_")}
    env["WIREMESH_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        env["WIREMESH_DATABASE_URL"] = settings.database_url
    port = free_port()
    wiremesh = Path(sys.executable).parent / "wiremesh"
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(wiremesh), "server", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert process.stdout is not None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        printed = b"".join(process.stdout.readline() for _ in range(3)).decode()
        assert f"listening on {base}" in printed
        match = TOKEN_RE.search(printed)
        assert match is not None, printed
        me = httpx.get(
            f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {match.group()}"}
        )
        assert me.status_code == 200
        assert me.json()["email"] == "admin@localhost"
        assert me.json()["is_server_admin"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
    # uvicorn shuts down cleanly, then re-raises the signal it caught
    assert process.returncode in {0, -signal.SIGTERM}, log_path.read_text()
    log = log_path.read_text()
    assert "Application shutdown complete" in log
    assert "Warning" not in log


def test_tls_flags_reach_uvicorn_in_pairs(served: list[uvicorn.Config], tmp_path: Path) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_text("certificate")
    key.write_text("key")
    result = invoke("server", "--tls-cert", str(cert), "--tls-key", str(key))
    assert result.exit_code == 0, result.output
    assert "listening on https://127.0.0.1:8080" in result.stdout
    assert (served[-1].ssl_certfile, served[-1].ssl_keyfile) == (str(cert), str(key))
    assert served[-1].log_config is None  # the command set up logging, uvicorn's too

    lone = invoke("server", "--tls-cert", str(cert))
    assert lone.exit_code == 1
    assert "--tls-cert and --tls-key go together" in lone.stderr
    assert len(served) == 1
