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

from wiremesh.protocol import Candidate, Peer, PeerRemove, PeerUpsert, peer_json

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
    lan: tuple[str, ...] = ()


def format_endpoint(public_ip: str | None, public_port: int | None) -> str | None:
    """Where peers reach a device's WireGuard: the address the server saw, the port it gave."""
    if public_ip is None or public_port is None:
        return None
    host = f"[{public_ip}]" if ":" in public_ip else public_ip
    return f"{host}:{public_port}"


def candidates_of(live: Presence | None, observed: str | None) -> list[Candidate]:
    """Every address a device may answer at, each once: what a relay saw first (it is what
    peers behind other NATs need), then its own addresses, then the WebSocket hint."""
    found: list[Candidate] = []
    seen: set[str] = set()

    def add(addr: str | None, kind: str) -> None:
        if addr is None or addr in seen:
            return
        try:
            found.append(Candidate.model_validate({"addr": addr, "kind": kind}))
        except ValueError:
            return  # a malformed stored value must not break the whole roster
        seen.add(found[-1].addr)

    add(observed, "public")
    for addr in live.lan if live else ():
        add(addr, "lan")
    add(live.endpoint if live else None, "ws")
    return found


@dataclass(slots=True)
class OrgRoster:
    """``version``: the id of the last event this roster reflects (older ones are skipped).

    Each peer is cached encoded for both protocol versions: ``_peer_json`` (version 2)
    and ``_peer_json_v1`` (without the fields a version 1 agent would refuse).
    """

    org_id: int
    version: int
    devices: dict[str, DeviceIdentity] = field(default_factory=dict)
    presence: dict[str, Presence] = field(default_factory=dict)
    observed: dict[str, str] = field(default_factory=dict)
    """The mapping a relay last saw each device's packets come from, by peer_id."""
    _peer_json: dict[str, str] = field(default_factory=dict)
    _peer_json_v1: dict[str, str] = field(default_factory=dict)

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
            candidates=candidates_of(live, self.observed.get(peer_id)),
        )

    def is_online(self, peer_id: str) -> bool:
        return peer_id in self.presence

    def peers_json(self, exclude_peer_id: str, version: int = 2) -> str:
        """The JSON array of every peer but one, as a ``version`` agent reads it; peers not
        encoded yet are encoded now."""
        cache = self._peer_json if version >= 2 else self._peer_json_v1
        parts = []
        for peer_id in self.devices:
            if peer_id == exclude_peer_id:
                continue
            encoded = cache.get(peer_id)
            if encoded is None:
                peer = self.peer(peer_id)
                assert peer is not None
                encoded = cache[peer_id] = peer_json(peer, version)
            parts.append(encoded)
        return "[" + ",".join(parts) + "]"

    def _forget(self, peer_id: str) -> None:
        self._peer_json.pop(peer_id, None)
        self._peer_json_v1.pop(peer_id, None)

    def _changed(self, peer_id: str) -> PeerUpsert | None:
        peer = self.peer(peer_id)
        if peer is None:
            return None
        encoded = peer_json(peer)
        if self._peer_json.get(peer_id) == encoded:
            return None
        self._peer_json[peer_id] = encoded
        self._peer_json_v1.pop(peer_id, None)
        return PeerUpsert(peer=peer)

    # ------------------------------------------------------------------ changes

    def upsert_device(self, identity: DeviceIdentity) -> PeerChange | None:
        if self.devices.get(identity.peer_id) == identity:
            return None
        self.devices[identity.peer_id] = identity
        self._forget(identity.peer_id)
        return self._changed(identity.peer_id)

    def remove_device(self, peer_id: str) -> PeerChange | None:
        self.presence.pop(peer_id, None)
        self.observed.pop(peer_id, None)
        self._forget(peer_id)
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
        self.presence[peer_id] = Presence(connection_id, live.server_id, endpoint, live.lan)
        return self._changed(peer_id)

    def endpoint_observed(self, peer_id: str, endpoint: str) -> PeerChange | None:
        """A relay saw the device's NAT mapping; kept while the device exists."""
        if peer_id not in self.devices or self.observed.get(peer_id) == endpoint:
            return None
        self.observed[peer_id] = endpoint
        return self._changed(peer_id)
