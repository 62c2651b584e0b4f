"""The real backends on a real system: wireguard-go (and the kernel, where it has WireGuard)
in a fresh network namespace, checked with `wg show` and `ip`.

Needs root and wireguard-go (CI installs it): skipped with the reason otherwise. The
backend runs in this process; its commands go through ``ip netns exec``. The interface
name is unique to this pytest process, because wireguard-go's UAPI socket path is shared
by every namespace on the host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from tests.netns.lab import missing_requirements, remove_stale, run_prefix, sh
from tests.support.waiting import eventually
from wiremesh.agent.backend import (
    AddPeer,
    BackendUnavailable,
    DeviceConfig,
    PeerState,
    RemovePeer,
    UpdatePeer,
)
from wiremesh.agent.keys import generate_keypair, public_key_of
from wiremesh.agent.reconcile import plan
from wiremesh.agent.wireguard.commands import SubprocessRunner
from wiremesh.agent.wireguard.kernel import NO_KERNEL_MODULE, KernelBackend
from wiremesh.agent.wireguard.prereq import kernel_module_missing
from wiremesh.agent.wireguard.userspace import UAPI_SOCKET_DIR, WireGuardGoBackend
from wiremesh.agent.wireguard.wgtools import parse_dump
from wiremesh.protocol import Peer

pytestmark = pytest.mark.netns

PEER_A, PEER_B = generate_keypair().public_key, generate_keypair().public_key


@dataclass
class Namespace:
    name: str
    interface: str

    def run(self, *command: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.name, *command, check=check).stdout

    def runner(self) -> SubprocessRunner:
        return SubprocessRunner(prefix=("ip", "netns", "exec", self.name))

    def link_exists(self) -> bool:
        result = sh("ip", "netns", "exec", self.name, "ip", "link", "show", "dev",
                    self.interface, check=False)  # fmt: skip
        return result.returncode == 0


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    remove_stale()
    name = f"{run_prefix()}-i1"
    sh("ip", "netns", "add", name)
    sh("ip", "netns", "exec", name, "ip", "link", "set", "dev", "lo", "up")
    try:
        yield Namespace(name, f"{run_prefix()}-wg")
    finally:
        for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "delete", name, check=False)
        remove_stale(owner_pid=os.getpid())


@pytest.fixture
async def userspace(namespace: Namespace) -> AsyncIterator[WireGuardGoBackend]:
    backend = WireGuardGoBackend(
        namespace.interface, runner=namespace.runner(), restart_delays=(0.1,)
    )
    yield backend
    await backend.teardown()


def device(port: int = 0) -> DeviceConfig:
    return DeviceConfig(
        address=ipaddress.ip_interface("100.64.0.7/24"),
        private_key=generate_keypair().private_key,
        listen_port=port,
    )


def dump(namespace: Namespace) -> dict[str, tuple[str, str, str]]:
    """Peers as `wg show` prints them: key -> (endpoint, allowed ips, keepalive)."""
    text = namespace.run("wg", "show", namespace.interface, "dump")
    return {
        line.split("\t")[0]: tuple(line.split("\t")[i] for i in (2, 3, 7))  # type: ignore[misc]
        for line in text.splitlines()[1:]
    }


async def test_wireguard_go_brings_up_a_configured_interface_and_removes_it(
    namespace: Namespace, userspace: WireGuardGoBackend
) -> None:
    config = device(port=0)
    await userspace.setup(config)
    iface = namespace.interface

    # Key, random port read back, address, link up.
    assert namespace.run("wg", "show", iface, "public-key").strip() == public_key_of(
        config.private_key
    )
    port = int(namespace.run("wg", "show", iface, "listen-port"))
    assert port == userspace.listen_port > 0
    addresses = namespace.run("ip", "-o", "-4", "address", "show", "dev", iface)
    assert "inet 100.64.0.7/24" in addresses
    assert "UP" in namespace.run("ip", "link", "show", "dev", iface).split(">")[0]
    assert namespace.run("ip", "route", "show", "dev", iface).startswith("100.64.0.0/24 ")
    pid = userspace.pid
    assert pid is not None
    assert str(pid) in sh("ip", "netns", "pids", namespace.name).stdout.split()

    # Peers: allowed IP = the peer's /32, endpoint, keepalive 25 once there is an endpoint.
    await userspace.apply(
        [
            AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820"),
            AddPeer(PEER_B, frozenset({"100.64.0.3/32"})),
        ]
    )
    assert dump(namespace) == {
        PEER_A: ("198.18.0.12:51820", "100.64.0.2/32", "25"),
        PEER_B: ("(none)", "100.64.0.3/32", "off"),
    }
    assert await userspace.peers() == {
        PEER_A: PeerState(frozenset({"100.64.0.2/32"}), "198.18.0.12:51820"),
        PEER_B: PeerState(frozenset({"100.64.0.3/32"}), None),
    }
    desired = {
        "a": Peer(peer_id="a", virtual_ip="100.64.0.2", public_key=PEER_A,
                  endpoint="198.18.0.12:51820", online=True),
        "b": Peer(peer_id="b", virtual_ip="100.64.0.3", public_key=PEER_B),
    }  # fmt: skip
    assert plan(desired, await userspace.peers()) == []  # read back = what was set

    # An update touches one peer (its new endpoint turns the keepalive on); a removal
    # removes exactly that one.
    await userspace.apply([UpdatePeer(PEER_B, endpoint="198.18.0.13:4500")])
    assert dump(namespace)[PEER_B] == ("198.18.0.13:4500", "100.64.0.3/32", "25")
    await userspace.apply([RemovePeer(PEER_A)])
    assert set(dump(namespace)) == {PEER_B}

    # Re-keying keeps address, port and peers.
    rotated = DeviceConfig(config.address, generate_keypair().private_key, 0)
    await userspace.setup(rotated)
    assert namespace.run("wg", "show", iface, "public-key").strip() == public_key_of(
        rotated.private_key
    )
    assert int(namespace.run("wg", "show", iface, "listen-port")) == port
    assert set(dump(namespace)) == {PEER_B}

    # Teardown: interface, socket and process gone.
    await userspace.teardown()
    assert not namespace.link_exists()
    assert not (UAPI_SOCKET_DIR / f"{iface}.sock").exists()
    assert userspace.pid is None
    assert sh("ip", "netns", "pids", namespace.name).stdout.split() == []


async def test_a_killed_wireguard_go_comes_back_with_its_peers(
    namespace: Namespace, userspace: WireGuardGoBackend
) -> None:
    await userspace.setup(device(port=0))
    port = userspace.listen_port
    await userspace.apply([AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820")])
    first = userspace.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await eventually(lambda: userspace.restarts == 1, seconds=15)
    await eventually(lambda: PEER_A in dump(namespace), seconds=5)
    assert dump(namespace)[PEER_A] == ("198.18.0.12:51820", "100.64.0.2/32", "25")
    assert int(namespace.run("wg", "show", namespace.interface, "listen-port")) == port
    assert "inet 100.64.0.7/24" in namespace.run("ip", "-o", "address", "show", "dev",
                                                 namespace.interface)  # fmt: skip
    assert userspace.pid not in (None, first)


async def test_a_port_in_use_is_a_clear_error_and_leaves_nothing(
    namespace: Namespace, userspace: WireGuardGoBackend
) -> None:
    blocker = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", namespace.name, "python3", "-c",
        "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.bind(('0.0.0.0', 51999)); print('bound', flush=True); time.sleep(60)",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert blocker.stdout is not None
        assert (await blocker.stdout.readline()).strip() == b"bound"
        with pytest.raises(OSError, match="listen-port 51999` failed") as caught:
            await userspace.setup(device(port=51999))
        assert "in use" in str(caught.value)
        assert not namespace.link_exists()
        assert userspace.pid is None
    finally:
        blocker.kill()
        await blocker.wait()


async def test_the_kernel_backend_works_or_says_the_module_is_missing(
    namespace: Namespace,
) -> None:
    backend = KernelBackend(namespace.interface, runner=namespace.runner())
    config = device(port=0)
    if kernel_module_missing() is not None and not _kernel_can_create(namespace):
        with pytest.raises(BackendUnavailable) as caught:
            await backend.setup(config)
        assert str(caught.value).startswith(NO_KERNEL_MODULE)
        assert "Unknown device type" in str(caught.value)
        assert not namespace.link_exists()
        return
    try:  # pragma: no cover - only where the kernel has WireGuard
        await backend.setup(config)
        await backend.apply([AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820")])
        shown = parse_dump(namespace.run("wg", "show", namespace.interface, "dump"))
        assert shown.public_key == public_key_of(config.private_key)
        assert shown.peers[PEER_A].allowed_ips == frozenset({"100.64.0.2/32"})
    finally:
        await backend.teardown()
    assert not namespace.link_exists()


def _kernel_can_create(namespace: Namespace) -> bool:
    probe = f"{run_prefix()}-kp"
    result = sh("ip", "netns", "exec", namespace.name, "ip", "link", "add", "dev", probe,
                "type", "wireguard", check=False)  # fmt: skip
    if result.returncode == 0:
        sh("ip", "netns", "exec", namespace.name, "ip", "link", "delete", "dev", probe)
        return True
    return False
