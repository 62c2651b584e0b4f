"""The backend contract: the device config and the peer table arithmetic."""

from __future__ import annotations

import ipaddress

import pytest

from wiremesh.agent.backend import (
    DeviceConfig,
    PeerState,
    RemovePeer,
    UpdatePeer,
    apply_changes,
)
from wiremesh.agent.keys import generate_keypair

KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="


def test_device_config_never_shows_the_private_key() -> None:
    config = DeviceConfig(ipaddress.ip_interface("100.64.0.7/24"), generate_keypair().private_key)
    assert config.private_key not in repr(config)


def test_device_config_refuses_a_port_out_of_range() -> None:
    with pytest.raises(ValueError, match="listen_port"):
        DeviceConfig(ipaddress.ip_interface("100.64.0.7/24"), "x", 70000)


def test_apply_changes_ignores_updates_and_removals_of_unknown_keys() -> None:
    table = {KEY_A: PeerState(frozenset({"100.64.0.2/32"}))}
    result = apply_changes(table, [UpdatePeer(KEY_B, endpoint="198.51.100.1:1"), RemovePeer(KEY_B)])
    assert result == table
    assert result is not table
