"""The `wg`/`ip` commands a real backend runs, through a scripted runner (no root needed).

The kernel backend stands for both real backends here: once the interface exists they
share every command (tests/agent/wireguard/test_userspace_backend.py covers what differs).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging

import pytest

from tests.agent.wireguard.fakes import FakeRunner
from wiremesh.agent.backend import (
    AddPeer,
    BackendUnavailable,
    DeviceConfig,
    PeerState,
    RemovePeer,
    UpdatePeer,
    WireGuardBackend,
)
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.reconcile import plan
from wiremesh.agent.wireguard.commands import CommandError
from wiremesh.agent.wireguard.kernel import NO_KERNEL_MODULE, KernelBackend
from wiremesh.protocol import Peer

PEER_A = "7VFTTd2fH3GtPMHy8z+YoF5u8z6cMHSogxRIxHAWlW8="
PEER_B = "eT+A4OhxBDj5RIfYAm23nJT75fI4wDh/y/g3y9WaS3Y="


def device(port: int = 51820, address: str = "100.64.0.7/24") -> DeviceConfig:
    return DeviceConfig(
        address=ipaddress.ip_interface(address),
        private_key=generate_keypair().private_key,
        listen_port=port,
    )


def dump(*peer_lines: str, port: int = 51820) -> str:
    head = "PRIVATEKEY\tPUBLICKEY\t" + str(port) + "\toff"
    return "\n".join([head, *peer_lines]) + "\n"


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def backend(runner: FakeRunner) -> KernelBackend:
    return KernelBackend("wm0", runner=runner)


def test_the_real_backends_implement_the_protocol(runner: FakeRunner) -> None:
    from wiremesh.agent.wireguard.userspace import WireGuardGoBackend

    assert isinstance(KernelBackend(runner=runner), WireGuardBackend)
    assert isinstance(WireGuardGoBackend(runner=runner), WireGuardBackend)


async def test_setup_sets_the_mtu_given_before_raising_the_interface(runner: FakeRunner) -> None:
    backend = KernelBackend("wm0", runner=runner, mtu=1380, keepalive=0)
    await backend.setup(device())
    assert runner.commands()[-2:] == [
        ["ip", "link", "set", "dev", "wm0", "mtu", "1380"],
        ["ip", "link", "set", "dev", "wm0", "up"],
    ]


def test_a_backend_refuses_an_mtu_out_of_range(runner: FakeRunner) -> None:
    from wiremesh.agent.wireguard.userspace import WireGuardGoBackend

    with pytest.raises(ValueError, match="1279"):
        KernelBackend("wm0", runner=runner, mtu=1279)
    with pytest.raises(ValueError, match="9001"):
        WireGuardGoBackend("wm0", runner=runner, mtu=9001)


async def test_setup_creates_keys_addresses_and_raises_the_interface(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    config = device()
    await backend.setup(config)
    assert runner.commands() == [
        ["ip", "link", "add", "dev", "wm0", "type", "wireguard"],
        ["wg", "set", "wm0", "private-key", "/dev/stdin", "listen-port", "51820"],
        ["ip", "address", "add", "100.64.0.7/24", "dev", "wm0"],
        ["ip", "link", "set", "dev", "wm0", "up"],
    ]
    assert backend.listen_port == 51820
    key_calls = [call for call in runner.calls if call.stdin is not None]
    assert [call.stdin for call in key_calls] == [config.private_key + "\n"]


async def test_the_private_key_is_never_on_a_command_line(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    config = device()
    await backend.setup(config)
    await backend.setup(dataclasses.replace(config, private_key=generate_keypair().private_key))
    await backend.apply([AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820")])
    for call in runner.calls:
        assert config.private_key not in " ".join(call.argv)


async def test_port_zero_reads_back_the_port_wireguard_chose(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    await backend.setup(device(port=0))
    assert [
        "wg",
        "set",
        "wm0",
        "private-key",
        "/dev/stdin",
        "listen-port",
        "0",
    ] in runner.commands()
    assert ["wg", "show", "wm0", "listen-port"] in runner.commands()
    assert backend.listen_port == runner.random_port


async def test_setup_again_changes_only_the_key(backend: KernelBackend, runner: FakeRunner) -> None:
    config = device()
    await backend.setup(config)
    runner.calls.clear()
    rotated = dataclasses.replace(config, private_key=generate_keypair().private_key)
    await backend.setup(rotated)
    assert runner.commands() == [["wg", "set", "wm0", "private-key", "/dev/stdin"]]
    assert runner.calls[-1].stdin == rotated.private_key + "\n"


async def test_setup_again_changes_only_the_address(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    config = device()
    await backend.setup(config)
    runner.calls.clear()
    await backend.setup(
        dataclasses.replace(config, address=ipaddress.ip_interface("100.64.0.9/24"))
    )
    assert runner.commands() == [
        ["ip", "address", "del", "100.64.0.7/24", "dev", "wm0"],
        ["ip", "address", "add", "100.64.0.9/24", "dev", "wm0"],
    ]


async def test_setup_again_with_port_zero_keeps_the_port_already_bound(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    config = device(port=0)
    await backend.setup(config)
    runner.calls.clear()
    await backend.setup(config)
    assert runner.commands() == []
    assert backend.listen_port == runner.random_port
    await backend.setup(dataclasses.replace(config, listen_port=4500))
    assert runner.commands() == [["wg", "set", "wm0", "listen-port", "4500"]]
    assert backend.listen_port == 4500


async def test_apply_is_one_wg_set_for_the_changes_only(
    backend: KernelBackend, runner: FakeRunner, caplog: pytest.LogCaptureFixture
) -> None:
    await backend.setup(device())
    runner.calls.clear()
    with caplog.at_level(logging.INFO, logger="wiremesh.agent.wireguard"):
        await backend.apply(
            [
                RemovePeer(PEER_B),
                AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820"),
            ]
        )
        await backend.apply([])
    assert runner.commands() == [
        [
            "wg", "set", "wm0", "peer", PEER_B, "remove",
            "peer", PEER_A, "allowed-ips", "100.64.0.2/32", "endpoint", "198.18.0.12:51820",
            "persistent-keepalive", "25",
        ]
    ]  # fmt: skip
    messages = [record.getMessage() for record in caplog.records]
    assert f"kernel wm0: remove peer {PEER_B}" in messages
    assert any(m.startswith(f"kernel wm0: add peer {PEER_A}") for m in messages)


async def test_peers_reports_the_endpoint_set_not_the_one_wireguard_roamed_to(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    await backend.setup(device())
    await backend.apply([AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820")])
    # WireGuard now shows where PEER_A last spoke from; PEER_B was never configured by us.
    runner.dump = dump(
        f"{PEER_A}\t(none)\t203.0.113.5:61000\t100.64.0.2/32\t1700000000\t10\t20\t25",
        f"{PEER_B}\t(none)\t198.18.0.13:51820\t100.64.0.3/32\t0\t0\t0\toff",
    )
    assert await backend.peers() == {
        PEER_A: PeerState(frozenset({"100.64.0.2/32"}), "198.18.0.12:51820"),
        PEER_B: PeerState(frozenset({"100.64.0.3/32"}), "198.18.0.13:51820"),
    }
    # So an unchanged desired state plans nothing, and roaming is left alone.
    desired = {"a": Peer(peer_id="a", virtual_ip="100.64.0.2", public_key=PEER_A,
                         endpoint="198.18.0.12:51820", online=True)}  # fmt: skip
    assert plan(desired, {PEER_A: (await backend.peers())[PEER_A]}) == []


async def test_an_updated_endpoint_is_what_peers_reports_next(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    await backend.setup(device())
    await backend.apply([AddPeer(PEER_A, frozenset({"100.64.0.2/32"}), "198.18.0.12:51820")])
    await backend.apply([UpdatePeer(PEER_A, endpoint="198.18.0.99:51820")])
    runner.dump = dump(f"{PEER_A}\t(none)\t203.0.113.5:1\t100.64.0.2/32\t0\t0\t0\t25")
    assert (await backend.peers())[PEER_A].endpoint == "198.18.0.99:51820"
    await backend.apply([RemovePeer(PEER_A)])
    runner.dump = dump(f"{PEER_A}\t(none)\t203.0.113.5:1\t100.64.0.2/32\t0\t0\t0\t25")
    assert (await backend.peers())[PEER_A].endpoint == "203.0.113.5:1"  # no longer ours


async def test_an_unreadable_dump_is_a_backend_error(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    await backend.setup(device())
    runner.dump = "garbage\n"
    with pytest.raises(BackendUnavailable, match="cannot read `wg show wm0 dump`"):
        await backend.peers()


async def test_without_the_module_the_kernel_backend_says_so(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    runner.failures[("ip", "link", "add")] = "Error: Unknown device type."
    with pytest.raises(BackendUnavailable) as caught:
        await backend.setup(device())
    message = str(caught.value)
    assert message.startswith(NO_KERNEL_MODULE)
    assert "--backend wireguard-go" in message
    assert "Unknown device type" in message
    await backend.teardown()  # nothing was created: nothing to remove
    assert ["ip", "link", "delete", "dev", "wm0"] not in runner.commands()


async def test_other_failures_carry_the_command_and_its_stderr(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    runner.failures[("ip", "link", "add")] = "RTNETLINK answers: Operation not permitted"
    with pytest.raises(CommandError) as caught:
        await backend.setup(device())
    assert "`ip link add dev wm0 type wireguard` failed with exit status 1" in str(caught.value)
    assert "Operation not permitted" in str(caught.value)
    assert isinstance(caught.value, OSError)  # the session loop reports OSErrors clearly


async def test_a_failed_configuration_removes_the_new_interface(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    runner.failures[("wg", "set")] = "Unable to modify interface: Address already in use"
    with pytest.raises(CommandError, match="Address already in use"):
        await backend.setup(device())
    assert runner.commands()[-1] == ["ip", "link", "delete", "dev", "wm0"]
    assert "wm0" not in runner.links


async def test_an_existing_other_interface_of_that_name_is_refused(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    runner.links["wm0"] = "veth"
    with pytest.raises(BackendUnavailable, match="exists and is not a WireGuard interface"):
        await backend.setup(device())
    assert runner.links["wm0"] == "veth"
    assert runner.commands() == []


async def test_a_wireguard_interface_left_by_a_crash_is_taken_over(
    backend: KernelBackend, runner: FakeRunner, caplog: pytest.LogCaptureFixture
) -> None:
    runner.links["wm0"] = "wireguard"
    with caplog.at_level(logging.WARNING, logger="wiremesh.agent.wireguard"):
        await backend.setup(device())
    assert runner.commands() == [
        ["wg", "set", "wm0", "private-key", "/dev/stdin", "listen-port", "51820"],
        ["ip", "address", "flush", "dev", "wm0"],
        ["ip", "address", "add", "100.64.0.7/24", "dev", "wm0"],
        ["ip", "link", "set", "dev", "wm0", "up"],
    ]
    assert "taking it over" in caplog.text


async def test_teardown_removes_the_interface_once(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    await backend.teardown()  # before setup: nothing to do
    assert runner.commands() == []
    await backend.setup(device())
    await backend.teardown()
    await backend.teardown()
    assert runner.commands().count(["ip", "link", "delete", "dev", "wm0"]) == 1
    assert "wm0" not in runner.links
    assert backend.listen_port == 0


async def test_teardown_tolerates_an_interface_already_gone(
    backend: KernelBackend, runner: FakeRunner
) -> None:
    await backend.setup(device())
    del runner.links["wm0"]  # someone ran `ip link delete wm0`
    await backend.teardown()


async def test_calls_before_setup_are_a_bug(backend: KernelBackend) -> None:
    with pytest.raises(RuntimeError, match="not set up"):
        await backend.apply([RemovePeer(PEER_A)])
    with pytest.raises(RuntimeError, match="not set up"):
        await backend.peers()


def test_an_unusable_interface_name_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="not a usable interface name"):
        KernelBackend("-rf")
