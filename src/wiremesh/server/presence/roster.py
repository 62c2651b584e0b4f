"""One organization as its peers see it: devices, who is online where, each peer encoded once.

A welcome to a device of a 10,000-device org lists 9,999 peers. Building and encoding those
for every connect would make a reconnect storm quadratic; instead the roster keeps each
peer's JSON and a welcome only joins strings. A roster changes only by events (see
``directory.py``), so every replica's roster of an org is the same once it has read the
same events; each change returns the delta entry to send, or None when nothing changed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from wiremesh.protocol import Peer, PeerRemove, PeerUpsert

PeerChange = PeerUpsert | PeerRemove


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What presence needs to know of a device."""

    device_id: int
    org_id: int
    user_id: int
    peer_id: str
    virtual_ip: str
    hostname: str
    public_key: str | None
    network: str


@dataclass(frozen=True, slots=True)
class Presence:
    """A device's live session, on whichever replica holds it."""

    connection_id: uuid.UUID
    server_id: str | None
    endpoint: str | None


def format_endpoint(public_ip: str | None, public_port: int | None) -> str | None:
    """Where peers reach a device's WireGuard: the address the server saw, the port it gave."""
    if public_ip is None or public_port is None:
        return None
    host = f"[{public_ip}]" if ":" in public_ip else public_ip
    return f"{host}:{public_port}"


@dataclass(slots=True)
class OrgRoster:
    """``version``: the id of the last event this roster reflects (older ones are skipped)."""

    org_id: int
    version: int
    devices: dict[str, DeviceIdentity] = field(default_factory=dict)
    presence: dict[str, Presence] = field(default_factory=dict)
    _peer_json: dict[str, str] = field(default_factory=dict)

    def peer(self, peer_id: str) -> Peer | None:
        device = self.devices.get(peer_id)
        if device is None:
            return None
        live = self.presence.get(peer_id)
        return Peer(
            peer_id=device.peer_id,
            hostname=device.hostname,
            virtual_ip=device.virtual_ip,
            public_key=device.public_key,
            endpoint=live.endpoint if live else None,
            online=live is not None,
        )

    def is_online(self, peer_id: str) -> bool:
        return peer_id in self.presence

    def peers_json(self, exclude_peer_id: str) -> str:
        """The JSON array of every peer but one; peers not encoded yet are encoded now."""
        parts = []
        for peer_id in self.devices:
            if peer_id == exclude_peer_id:
                continue
            encoded = self._peer_json.get(peer_id)
            if encoded is None:
                peer = self.peer(peer_id)
                assert peer is not None
                encoded = self._peer_json[peer_id] = peer.model_dump_json()
            parts.append(encoded)
        return "[" + ",".join(parts) + "]"

    def _changed(self, peer_id: str) -> PeerUpsert | None:
        peer = self.peer(peer_id)
        if peer is None:
            return None
        encoded = peer.model_dump_json()
        if self._peer_json.get(peer_id) == encoded:
            return None
        self._peer_json[peer_id] = encoded
        return PeerUpsert(peer=peer)

    # ------------------------------------------------------------------ changes

    def upsert_device(self, identity: DeviceIdentity) -> PeerChange | None:
        if self.devices.get(identity.peer_id) == identity:
            return None
        self.devices[identity.peer_id] = identity
        self._peer_json.pop(identity.peer_id, None)
        return self._changed(identity.peer_id)

    def remove_device(self, peer_id: str) -> PeerChange | None:
        self.presence.pop(peer_id, None)
        self._peer_json.pop(peer_id, None)
        if self.devices.pop(peer_id, None) is None:
            return None
        return PeerRemove(peer_id=peer_id)

    def session_opened(self, peer_id: str, presence: Presence) -> PeerChange | None:
        self.presence[peer_id] = presence
        return self._changed(peer_id)

    def session_ended(self, peer_id: str, connection_id: uuid.UUID) -> PeerChange | None:
        """Only the session that is current ends the device's presence (not an older one)."""
        live = self.presence.get(peer_id)
        if live is None or live.connection_id != connection_id:
            return None
        del self.presence[peer_id]
        return self._changed(peer_id)

    def endpoint_changed(
        self, peer_id: str, connection_id: uuid.UUID, endpoint: str | None
    ) -> PeerChange | None:
        live = self.presence.get(peer_id)
        if live is None or live.connection_id != connection_id:
            return None
        self.presence[peer_id] = Presence(connection_id, live.server_id, endpoint)
        return self._changed(peer_id)
