"""Desired peers vs configured peers -> the changes that turn one into the other. Pure.

Rules:

- WireGuard knows peers by public key, so both sides are compared by public key.
- A peer's allowed IP is its virtual IP as a host route (``/32``, ``/128`` for IPv6).
- Peers without a public key cannot be configured and are skipped; so is a peer that
  carries this device's own key. If two peers share a key, the lowest ``peer_id`` wins,
  so the result does not depend on map order.
- Offline peers stay configured: only peers gone from the desired map are removed.
- An update changes only what differs and never removes and re-adds a peer whose key is
  unchanged (that would drop its session). A peer without a known endpoint keeps the one
  WireGuard has: an endpoint cannot be unset, and the last one seen is the best guess.
- Changes come as removals, then updates, then additions, each sorted by public key, so
  an address freed by a removed or updated peer is free before another peer takes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from wiremesh.agent.backend import AddPeer, PeerChange, PeerState, RemovePeer, UpdatePeer
from wiremesh.protocol import Peer

__all__ = ["allowed_ips_of", "desired_state", "plan", "plan_table"]


def allowed_ips_of(peer: Peer) -> frozenset[str]:
    """The peer's virtual IP as a single-host route."""
    address = ipaddress.ip_address(peer.virtual_ip)
    return frozenset({f"{address}/{address.max_prefixlen}"})


def desired_state(
    desired: Mapping[str, Peer], *, own_public_key: str | None = None
) -> dict[str, PeerState]:
    """The WireGuard peer table the desired peers call for: public key -> state."""
    table: dict[str, PeerState] = {}
    for peer_id in sorted(desired, reverse=True):  # the lowest peer_id is written last: wins
        peer = desired[peer_id]
        if peer.public_key is None or peer.public_key == own_public_key:
            continue
        table[peer.public_key] = PeerState(allowed_ips_of(peer), peer.endpoint)
    return table


def plan(
    desired: Mapping[str, Peer],
    actual: Mapping[str, PeerState],
    *,
    own_public_key: str | None = None,
) -> list[PeerChange]:
    """Changes that make ``actual`` (public key -> state) match ``desired`` (peer_id -> Peer).

    Empty when nothing needs to change, so calling it again after applying is free.
    """
    return plan_table(desired_state(desired, own_public_key=own_public_key), actual)


def plan_table(
    target: Mapping[str, PeerState],
    actual: Mapping[str, PeerState],
    readd: frozenset[str] | set[str] = frozenset(),
) -> list[PeerChange]:
    """Changes that make ``actual`` match ``target`` (both public key -> state); keys in
    ``readd`` that exist are removed and added again (WireGuard then sends at once)."""
    removals: list[PeerChange] = [RemovePeer(key) for key in sorted(actual) if key not in target]
    updates: list[PeerChange] = []
    additions: list[PeerChange] = []
    for key in sorted(target):
        want = target[key]
        have = actual.get(key)
        if have is not None and key in readd:
            removals.append(RemovePeer(key))
            have = None
        if have is None:
            additions.append(AddPeer(key, want.allowed_ips, want.endpoint))
            continue
        allowed_ips = want.allowed_ips if want.allowed_ips != have.allowed_ips else None
        endpoint = (
            want.endpoint if want.endpoint is not None and want.endpoint != have.endpoint else None
        )
        if allowed_ips is not None or endpoint is not None:
            updates.append(UpdatePeer(key, allowed_ips, endpoint))
    return removals + updates + additions
