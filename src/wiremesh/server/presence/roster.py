"""Each organization's devices as their peers see them, with every peer encoded once.

A welcome to a device of a 10,000-device org lists 9,999 peers. Building and encoding those
for every connect would make a reconnect storm quadratic; instead the roster keeps each
peer's JSON and a welcome only joins strings. The roster is re-read from the database when
it is older than ``ROSTER_TTL`` (so changes made by the CLI or another replica show up),
and changes made through this replica update it at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from wiremesh.protocol import Peer

ROSTER_TTL = 5.0


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What the hub needs to know of a device; read once when its session starts."""

    device_id: int
    org_id: int
    user_id: int
    peer_id: str
    virtual_ip: str
    hostname: str
    public_key: str | None
    network: str


PeerEncoder = Callable[["DeviceIdentity"], Peer]
"""Turns a device into the Peer it is right now (its online state comes from the hub)."""


@dataclass(slots=True)
class OrgRoster:
    org_id: int
    loaded_at: float
    devices: dict[str, DeviceIdentity] = field(default_factory=dict)
    _peer_json: dict[str, str] = field(default_factory=dict)

    def is_fresh(self, now: float) -> bool:
        return now - self.loaded_at < ROSTER_TTL

    def replace(self, devices: list[DeviceIdentity], now: float) -> None:
        """Take a fresh read; encoded peers stay valid only for devices that did not change."""
        fresh = {device.peer_id: device for device in devices}
        for peer_id in list(self._peer_json):
            if self.devices.get(peer_id) != fresh.get(peer_id):
                del self._peer_json[peer_id]
        self.devices = fresh
        self.loaded_at = now

    def record(self, peer: Peer, identity: DeviceIdentity | None) -> None:
        """A peer changed (online, offline, endpoint, name, key): keep its new encoding."""
        if identity is not None:
            self.devices[peer.peer_id] = identity
        if peer.peer_id in self.devices:
            self._peer_json[peer.peer_id] = peer.model_dump_json()

    def forget(self, peer_id: str) -> None:
        self.devices.pop(peer_id, None)
        self._peer_json.pop(peer_id, None)

    def peers_json(self, exclude_peer_id: str, encode_missing: PeerEncoder) -> str:
        """The JSON array of every peer but one; peers never encoded yet are encoded now."""
        parts = []
        for peer_id, device in self.devices.items():
            if peer_id == exclude_peer_id:
                continue
            encoded = self._peer_json.get(peer_id)
            if encoded is None:
                encoded = encode_missing(device).model_dump_json()
                self._peer_json[peer_id] = encoded
            parts.append(encoded)
        return "[" + ",".join(parts) + "]"
