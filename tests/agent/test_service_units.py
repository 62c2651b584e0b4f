"""The systemd units in contrib/systemd: valid for systemd, hardened, and the agent's
"refused" exit status is not restarted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wiremesh.agent.cli import EXIT_REFUSED

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
INSTALLED_AT = "/usr/local/bin/wiremesh"


def settings(name: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, by key (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("name", ["wiremesh-agent.service", "wiremesh-server.service"])
def test_systemd_accepts_the_unit(name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    command = shutil.which("wiremesh", path=str(Path(sys.executable).parent)) or shutil.which(
        "wiremesh"
    )
    assert command is not None, "the wiremesh command is not installed"
    # verify checks that ExecStart's program exists: point it at this installation's
    text = (UNITS / name).read_text()
    assert f"ExecStart={INSTALLED_AT} " in text
    unit = tmp_path / name
    unit.write_text(text.replace(INSTALLED_AT, command))
    result = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if name in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []


def test_the_agent_runs_with_network_admin_rights_only_and_is_not_restarted_when_refused() -> None:
    agent = settings("wiremesh-agent.service")
    assert agent["RestartPreventExitStatus"] == [str(EXIT_REFUSED)]
    assert agent["Restart"] == ["on-failure"]
    assert agent["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert agent["DevicePolicy"] == ["closed"]
    assert agent["DeviceAllow"] == ["/dev/net/tun rw"]
    assert agent["StateDirectory"] == ["wiremesh"]
    assert agent["KillMode"] == ["mixed"]


@pytest.mark.parametrize("name", ["wiremesh-agent.service", "wiremesh-server.service"])
def test_both_units_are_hardened(name: str) -> None:
    unit = settings(name)
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert unit.get(key) == [value], key
    assert unit["StateDirectory"]
    assert unit["StateDirectoryMode"] == ["0700"]


def test_the_server_runs_as_its_own_user_without_capabilities() -> None:
    server = settings("wiremesh-server.service")
    assert server["User"] == ["wiremesh"]
    assert server["CapabilityBoundingSet"] == [""]
    assert server["PrivateDevices"] == ["yes"]
