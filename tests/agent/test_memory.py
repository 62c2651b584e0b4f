"""The in-memory backend: the contract kept in a dict, every change logged."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from wiremesh.agent.backend import (
    AddPeer,
    DeviceConfig,
    PeerState,
    RemovePeer,
    UpdatePeer,
    WireGuardBackend,
)
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.memory import MemoryBackend

KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="


def device(port: int = 51820) -> DeviceConfig:
    return DeviceConfig(
        address=ipaddress.ip_interface("100.64.0.7/24"),
        private_key=generate_keypair().private_key,
        listen_port=port,
    )


def test_memory_backend_implements_the_protocol() -> None:
    assert isinstance(MemoryBackend(), WireGuardBackend)


async def test_memory_backend_applies_changes_and_logs_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend()
    await backend.setup(device(0))
    assert backend.listen_port == 51820  # 0 = pick one
    with caplog.at_level(logging.INFO, logger="wiremesh.agent.backend"):
        await backend.apply(
            [
                AddPeer(KEY_A, frozenset({"100.64.0.2/32"}), "198.51.100.1:51820"),
                AddPeer(KEY_B, frozenset({"100.64.0.3/32"})),
                UpdatePeer(KEY_B, endpoint="198.51.100.2:4500"),
                RemovePeer(KEY_A),
            ]
        )
    assert await backend.peers() == {
        KEY_B: PeerState(frozenset({"100.64.0.3/32"}), "198.51.100.2:4500")
    }
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4
    assert messages[0].startswith(f"memory backend: add peer {KEY_A}")
    assert messages[3] == f"memory backend: remove peer {KEY_A}"


async def test_memory_backend_peers_is_a_copy() -> None:
    backend = MemoryBackend()
    await backend.setup(device())
    await backend.apply([AddPeer(KEY_A, frozenset({"100.64.0.2/32"}))])
    (await backend.peers()).clear()
    assert KEY_A in await backend.peers()


async def test_memory_backend_teardown_forgets_everything_and_is_idempotent() -> None:
    backend = MemoryBackend()
    await backend.setup(device())
    await backend.apply([AddPeer(KEY_A, frozenset({"100.64.0.2/32"}))])
    await backend.teardown()
    await backend.teardown()
    assert backend.torn_down
    assert await backend.peers() == {}


async def test_memory_backend_refuses_changes_before_setup() -> None:
    with pytest.raises(RuntimeError):
        await MemoryBackend().apply([RemovePeer(KEY_A)])
