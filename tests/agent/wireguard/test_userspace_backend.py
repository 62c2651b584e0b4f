"""wireguard-go as a supervised child: start, readiness, output, restart, stop (no root:
a small script stands in for wireguard-go and the `ip`/`wg` answers are scripted)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.agent.wireguard.fakes import FakeRunner
from tests.support.waiting import eventually
from wiremesh.agent.backend import AddPeer, BackendUnavailable, DeviceConfig
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.wireguard.userspace import WireGuardGoBackend

PEER_A = "7VFTTd2fH3GtPMHy8z+YoF5u8z6cMHSogxRIxHAWlW8="


def device(port: int = 51820) -> DeviceConfig:
    return DeviceConfig(
        address=ipaddress.ip_interface("100.64.0.7/24"),
        private_key=generate_keypair().private_key,
        listen_port=port,
    )


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    directory = Path(f"/tmp/wmtest-{os.getpid()}-{id(tmp_path):x}")
    directory.mkdir()
    yield directory
    for leftover in directory.iterdir():
        leftover.unlink()
    directory.rmdir()


@pytest.fixture
def runner(socket_dir: Path) -> FakeRunner:
    return FakeRunner(socket_dir=socket_dir)


@pytest.fixture
async def backend(runner: FakeRunner, socket_dir: Path) -> AsyncIterator[WireGuardGoBackend]:
    wireguard = WireGuardGoBackend(
        "wm0", runner=runner, socket_dir=socket_dir, restart_delays=(0.05,)
    )
    yield wireguard
    await wireguard.teardown()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0]
    except (OSError, IndexError):
        return "zombie"


async def test_setup_starts_wireguard_go_in_the_foreground_and_waits_for_its_socket(
    backend: WireGuardGoBackend,
    runner: FakeRunner,
    socket_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="wiremesh.agent.wireguard"):
        await backend.setup(device())
        pid = backend.pid
        assert pid is not None
        await eventually(lambda: "UAPI listener started" in caplog.text)
    argv, env = runner.started[0]
    assert argv == ("wireguard-go", "-f", "wm0")
    assert env["WG_PROCESS_FOREGROUND"] == "1"
    assert env["LOG_LEVEL"] == "error"
    assert (socket_dir / "wm0.sock").is_socket()
    # Configured only once the socket was there.
    assert runner.commands()[0] == [
        "wg", "set", "wm0", "private-key", "/dev/stdin", "listen-port", "51820",
    ]  # fmt: skip
    assert "wireguard-go[wm0]: INFO: UAPI listener started" in caplog.text

    await backend.teardown()
    assert backend.pid is None
    assert not alive(pid)
    assert not (socket_dir / "wm0.sock").exists()  # wireguard-go cleans up on SIGTERM


async def test_traffic_for_a_peer_not_yet_online_is_no_error_in_the_log(
    backend: WireGuardGoBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """wireguard-go logs "no known endpoint for peer" (as an error) for every packet to a
    peer that has not been online yet: expected, so only at debug level."""
    with caplog.at_level(logging.DEBUG, logger="wiremesh.agent.wireguard"):
        await backend.setup(device())
        await eventually(lambda: "no known endpoint" in caplog.text)
    found = [record for record in caplog.records if "no known endpoint" in record.getMessage()]
    assert [record.levelno for record in found] == [logging.DEBUG]


async def test_debug_logging_makes_wireguard_go_verbose(
    backend: WireGuardGoBackend, runner: FakeRunner
) -> None:
    logging.getLogger("wiremesh.agent.wireguard").setLevel(logging.DEBUG)
    try:
        await backend.setup(device())
    finally:
        logging.getLogger("wiremesh.agent.wireguard").setLevel(logging.NOTSET)
    assert runner.started[0][1]["LOG_LEVEL"] == "verbose"


async def test_a_wireguard_go_that_exits_at_once_is_reported_with_its_output(
    backend: WireGuardGoBackend, runner: FakeRunner
) -> None:
    runner.fail_start = True
    with pytest.raises(BackendUnavailable) as caught:
        await backend.setup(device())
    message = str(caught.value)
    assert "wireguard-go exited with status 1 before wm0 was up" in message
    assert "Failed to create TUN device: operation not permitted" in message


async def test_a_crashed_wireguard_go_is_restarted_with_device_and_peers(
    backend: WireGuardGoBackend, runner: FakeRunner, caplog: pytest.LogCaptureFixture
) -> None:
    config = device(port=0)
    await backend.setup(config)
    await backend.apply([AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820")])
    first = backend.pid
    assert first is not None
    runner.calls.clear()
    with caplog.at_level(logging.INFO, logger="wiremesh.agent.wireguard"):
        os.kill(first, signal.SIGKILL)  # leaves its socket behind, like a real crash
        await eventually(lambda: backend.restarts == 1 and "restored" in caplog.text)
    assert backend.pid not in (None, first)
    assert "exited unexpectedly with status -9" in caplog.text
    commands = runner.commands()
    assert commands[0] == ["ip", "link", "delete", "dev", "wm0"]  # the dead one's link
    # The port peers know (chosen at random first) is kept, then every peer comes back.
    assert commands[1] == [
        "wg", "set", "wm0", "private-key", "/dev/stdin", "listen-port", str(runner.random_port),
    ]  # fmt: skip
    assert commands[-1] == [
        "wg", "set", "wm0", "peer", PEER_A, "allowed-ips", "100.64.0.2/32",
        "endpoint", "198.18.0.12:51820", "persistent-keepalive", "25",
    ]  # fmt: skip
    assert [c.stdin for c in runner.calls if c.stdin] == [config.private_key + "\n"]


async def test_teardown_does_not_restart_it(
    backend: WireGuardGoBackend, runner: FakeRunner
) -> None:
    await backend.setup(device())
    await backend.teardown()
    await asyncio.sleep(0.2)
    assert len(runner.started) == 1
    assert backend.restarts == 0


async def test_a_stale_socket_is_removed_before_starting(
    backend: WireGuardGoBackend, socket_dir: Path
) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_dir / "wm0.sock"))
    stale.close()  # the file stays, nobody listens
    await backend.setup(device())
    assert backend.pid is not None


async def test_a_live_socket_without_our_interface_means_another_namespace(
    backend: WireGuardGoBackend, runner: FakeRunner, socket_dir: Path
) -> None:
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(socket_dir / "wm0.sock"))
    other.listen()
    try:
        with pytest.raises(BackendUnavailable, match="another namespace or container"):
            await backend.setup(device())
    finally:
        other.close()
    assert runner.started == []


async def test_a_wireguard_go_left_by_an_earlier_run_is_replaced(
    backend: WireGuardGoBackend, runner: FakeRunner, socket_dir: Path
) -> None:
    leftover = await runner.start(["wireguard-go", "-f", "wm0"], env={})
    await eventually(lambda: (socket_dir / "wm0.sock").is_socket())

    async def delete_link_stops_it() -> None:  # what the kernel does for wireguard-go
        leftover.terminate()
        await leftover.wait()

    original = runner.run

    async def run(argv: list[str], *, stdin: str | None = None) -> object:
        if argv[:3] == ["ip", "link", "delete"]:
            await delete_link_stops_it()
        return await original(argv, stdin=stdin)

    runner.run = run  # type: ignore[method-assign,assignment]
    await backend.setup(device())
    assert leftover.returncode is not None
    assert backend.pid not in (None, leftover.pid)


async def test_a_kernel_interface_of_that_name_is_not_touched(
    backend: WireGuardGoBackend, runner: FakeRunner
) -> None:
    runner.links["wm0"] = "wireguard"
    with pytest.raises(BackendUnavailable, match="use --backend kernel"):
        await backend.setup(device())
    assert runner.links["wm0"] == "wireguard"
    assert runner.started == []
