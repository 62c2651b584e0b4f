"""Which path each peer takes: direct (its own WireGuard peer), or through a relay. Pure.

Fed the peers, the relays that are up, WireGuard's handshake times and the clock, it
returns the peer table WireGuard should have. Rules (docs/nat-traversal.md):

- Candidates are tried in order, ``KNOCK_SECONDS`` each: the peer's own LAN addresses
  first when it shares this device's public address (same NAT, no hairpin), else the
  mapping a relay saw, then the WebSocket hint, then LAN addresses.
- Without a relay, a peer's entry always carries its /32 and its endpoint walks the
  candidates until a handshake happens.
- With a relay, a peer's /32 lives on the relay's entry until the peer's own entry
  ("knocking": endpoint, keepalive, no allowed IPs) completes a handshake; then the /32
  moves to the peer's own entry. Both ends see the same handshake, so they move together.
- Every relay up is a peer (so each sees this device's NAT mapping); the first in the
  server's order carries the relayed /32s, so both ends of a relayed pair use the same one.
- A direct peer whose last handshake is older than ``STALE_SECONDS`` goes back to the relay.
- A peer that comes back online (the server says so) is knocked at anew: it may have
  restarted, and only a knock from this side opens a path through this side's NAT.
- A direct peer that is online but sends nothing (not even its keepalive) for
  :func:`silent_after` the keepalive interval has lost its end of the session: it is
  knocked at anew. With keepalives off (0) silence proves nothing and is not checked.
- Moving a knocking entry to another candidate address removes and re-adds it: WireGuard
  then sends at once instead of at its next 5 s retry (none when the address stays). New
  candidates that leave the endpoint in use first change nothing: a re-add would throw
  away a handshake under way.
- Two ends that knock at each other at the same moment (a device starting while its peer
  learns it is online) cross their handshake initiations: each answers the other's, which
  drops its own, and both answers are refused; WireGuard would retry 5 s later. So a
  knock without any handshake after ``CROSSED_RETRY_SECONDS`` is re-added once, by the end
  whose public key sorts first only, so the two retries do not cross again.
- A relay entry without a handshake yet is re-added every ``RELAY_RETRY_SECONDS``: the
  relay learns devices from the server about once a second and drops, silently, the
  initiations of a key it does not know yet; WireGuard's own retry would come 5 s later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from wiremesh.agent.backend import DEFAULT_KEEPALIVE, PeerState
from wiremesh.protocol import Peer, Relay

KNOCK_SECONDS: Final = 3.0
STALE_SECONDS: Final = 180.0
"""WireGuard re-handshakes a live session every 2 minutes; 3 without one means it is gone."""
RETRY_SECONDS: Final = 30.0
"""After every candidate failed, wait this long before knocking again (relay carries it)."""
SILENT_SECONDS: Final = 40.0
"""A direct peer that is online sends at least a keepalive every 25 s (the default); nothing
for this long means its end of the session is gone."""
SILENT_FACTOR: Final = 1.6
"""A longer keepalive gives a proportionally longer bound (40 s for 25 s)."""
RELAY_RETRY_SECONDS: Final = 1.0
CROSSED_RETRY_SECONDS: Final = 1.0
"""A handshake takes one round trip: none this long after a knock began means it crossed
the peer's (or was lost); see the module doc."""
"""A relay entry with no handshake yet is re-added this often (see the module doc)."""

Path = Literal["direct", "local", "relay", "none"]


def silent_after(keepalive: int) -> float | None:
    """How long an online direct peer may send nothing before its session counts as gone;
    ``None`` (never) when keepalives are off, as a quiet peer then sends nothing at all."""
    if keepalive <= 0:
        return None
    return max(SILENT_SECONDS, keepalive * SILENT_FACTOR)


def _host(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0].strip("[]")


def ordered_candidates(peer: Peer, own_public_ip: str | None) -> list[tuple[str, str]]:
    """``(addr, kind)`` in the order to try them (see the module doc)."""
    found = [(c.addr, c.kind) for c in peer.candidates]
    if not found and peer.endpoint:
        found = [(peer.endpoint, "ws")]
    same_nat = own_public_ip is not None and any(
        kind in ("ws", "public") and _host(addr) == own_public_ip for addr, kind in found
    )
    rank = {"lan": 0, "public": 1, "ws": 2} if same_nat else {"public": 0, "ws": 1, "lan": 2}
    return sorted(found, key=lambda item: rank.get(item[1], 3))


def host_route(virtual_ip: str) -> str:
    address = ipaddress.ip_address(virtual_ip)
    return f"{address}/{address.max_prefixlen}"


@dataclass(slots=True)
class _PeerPath:
    candidates: list[tuple[str, str]]
    index: int = 0
    knock_started: float = 0.0
    direct: bool = False
    readd: bool = True
    pause_until: float = 0.0
    online: bool = True
    """As the server last said; a peer coming back online is knocked at anew."""
    offline_since: float = 0.0
    """When this side learnt the peer was offline: a later handshake is with its new run."""
    received: int = 0
    heard_at: float = 0.0
    """Bytes received from the peer, and when that count last grew (direct peers)."""
    crossed_retry: bool = False
    """The knock was re-added once for a crossed handshake (see the module doc)."""


@dataclass(frozen=True, slots=True)
class PeerPath:
    """One peer's path as ``agent status`` and the server show it.

    ``endpoint``: where this device sends the peer's packets: the peer's own address on a
    direct or local path (the one WireGuard uses, which follows a roaming peer), the relay's
    on a relayed one, ``None`` while nothing carries the peer.
    """

    peer_id: str
    path: Path
    endpoint: str | None
    last_handshake: float | None
    """Unix time of the last handshake with the peer itself (not the relay)."""


@dataclass(slots=True)
class PathSelector:
    own_public_key: str | None = None
    own_public_ip: str | None = None
    keepalive: int = DEFAULT_KEEPALIVE
    """The peers' persistent keepalive (each side uses the same): bounds their silence."""
    _state: dict[str, _PeerPath] = field(default_factory=dict)
    _relay_tried: dict[str, float] = field(default_factory=dict)
    """Relay key -> when its entry was last (re-)added while it had no handshake."""
    _carrier: Relay | None = None
    """The relay that carries relayed peers, as of the last :meth:`target`."""
    _newly_direct: list[str] = field(default_factory=list)

    def target(
        self,
        peers: Mapping[str, Peer],
        relays: Sequence[Relay],
        handshakes: Mapping[str, float],
        now: float,
        received: Mapping[str, int] | None = None,
    ) -> tuple[dict[str, PeerState], set[str]]:
        """The peer table to configure (public key -> state) and the keys to re-add.

        ``handshakes``: unix time of each key's last handshake (0: never); ``now`` is unix
        time too, so the two compare. ``received``: bytes received from each key so far
        (``None``: unknown, and a silent direct peer is not noticed).
        """
        table: dict[str, PeerState] = {}
        readd: set[str] = set()
        relay = self._carrier = relays[0] if relays else None
        relayed: set[str] = set()
        silent = silent_after(self.keepalive)
        for peer_id in sorted(peers):
            peer = peers[peer_id]
            key = peer.public_key
            if key is None or key == self.own_public_key:
                continue
            candidates = ordered_candidates(peer, self.own_public_ip)
            state = self._track(key, peer, candidates, now)
            rx = None if received is None else received.get(key, 0)
            last = handshakes.get(key, 0.0)
            breaks_ties = self.own_public_key is not None and self.own_public_key < key
            if self._advance(
                state, peer, last, rx, now, relay is not None, silent, breaks_ties=breaks_ties
            ):
                self._newly_direct.append(peer.virtual_ip)
            # a direct peer keeps the endpoint WireGuard uses now (it may have roamed)
            endpoint = candidates[state.index][0] if candidates and not state.direct else None
            own_route = state.direct or relay is None
            table[key] = PeerState(
                frozenset({host_route(peer.virtual_ip)}) if own_route else frozenset(), endpoint
            )
            if not own_route:
                relayed.add(host_route(peer.virtual_ip))
            if state.readd and not state.direct:
                readd.add(key)
            state.readd = False
        for key in list(self._state):
            if key not in table:
                del self._state[key]
        for item in relays:
            if item.public_key in table or item.public_key == self.own_public_key:
                continue
            routes = frozenset(relayed) if relay is not None and item is relay else frozenset()
            table[item.public_key] = PeerState(routes, item.endpoint)
            tried = self._relay_tried.setdefault(item.public_key, now)
            if handshakes.get(item.public_key, 0.0) > 0:
                self._relay_tried[item.public_key] = now
            elif now - tried >= RELAY_RETRY_SECONDS:
                readd.add(item.public_key)
                self._relay_tried[item.public_key] = now
        for key in list(self._relay_tried):
            if key not in table:
                del self._relay_tried[key]
        return table, readd

    def _track(
        self, key: str, peer: Peer, candidates: list[tuple[str, str]], now: float
    ) -> _PeerPath:
        """The peer's state, made anew when its candidates change (keeping what still
        holds: the path, whether it is online, the knock under way at the same address)."""
        state = self._state.get(key)
        if state is not None and state.candidates == candidates:
            return state
        previous = state
        state = self._state[key] = _PeerPath(candidates, knock_started=now)
        if previous is None:
            if not peer.online:
                state.online, state.offline_since = False, now
            return state
        state.direct, state.online = previous.direct, previous.online
        state.offline_since = previous.offline_since
        state.received, state.heard_at = previous.received, previous.heard_at
        in_use = previous.candidates[previous.index][0] if previous.candidates else None
        if candidates and candidates[0][0] == in_use:
            state.knock_started = previous.knock_started
        # Re-added only to knock at once at a new address after one in use (WireGuard
        # would wait 5 s); a first endpoint turns the keepalive on, which sends by itself.
        # No candidates (the peer went offline) is no new address: the entry keeps its
        # endpoint and its session, which a peer that only reconnected still uses.
        state.readd = in_use is not None and bool(candidates) and candidates[0][0] != in_use
        return state

    def take_newly_direct(self) -> list[str]:
        """Virtual IPs of the peers that went direct since the last call.

        The side that answered a handshake counts it only once the first packet comes
        over the new session; a peer whose knock got through but that has nothing to send
        would leave this side knocking (and re-adding, which kills that session). Sending
        each of these one packet over the tunnel closes the handshake on their side.
        """
        taken, self._newly_direct = self._newly_direct, []
        return taken

    @staticmethod
    def _advance(
        state: _PeerPath,
        peer: Peer,
        last: float,
        rx: int | None,
        now: float,
        relayed: bool,
        silent: float | None,
        *,
        breaks_ties: bool = False,
    ) -> bool:
        """One tick of the peer's path: who came back, what went stale or silent, which
        handshake proves a path, and the knock's next address. Whether it went direct."""
        if peer.online and not state.online and last <= state.offline_since:
            # Back online, perhaps restarted with its WireGuard session gone, while ours
            # lives on and waits minutes for a rekey: knock now, from the first candidate
            # (behind a NAT only this side's knock opens the path). The entry is re-added
            # only to drop such a session: a re-add could drop the one its knock just made.
            state.direct, state.index, state.pause_until = False, 0, 0.0
            state.knock_started, state.readd = now, last > 0
            state.crossed_retry = False
            last = 0.0  # the handshake we saw was with its earlier run
        elif state.online and not peer.online:
            state.offline_since = now
        state.online = peer.online
        if state.direct and rx is not None:
            if rx != state.received:
                state.received, state.heard_at = rx, now
            elif peer.online and silent is not None and now - state.heard_at > silent:
                # Its keepalives stopped while it is online: our session is one-sided (the
                # peer dropped its own, say a re-add raced its knock) and, behind its NAT,
                # only our knock opens the path again.
                state.direct, state.index, state.pause_until = False, 0, 0.0
                state.knock_started, state.readd = now, True
                last = 0.0
        if state.direct and (last <= 0 or now - last > STALE_SECONDS):
            state.direct = False
            state.knock_started = now
            state.readd = True
        fresh = now - last < KNOCK_SECONDS and last > state.offline_since
        if not state.direct and last > 0 and (fresh or last >= state.knock_started - 1.0):
            # A handshake on the peer's own entry proves the path, whichever knock made it:
            # re-adding the entry now would drop a session the peer keeps using.
            state.direct = True
            state.received, state.heard_at = rx if rx is not None else 0, now
            return True
        if state.direct or not state.candidates or now < state.pause_until:
            return False
        if (
            breaks_ties
            and last <= 0
            and not state.crossed_retry
            and CROSSED_RETRY_SECONDS <= now - state.knock_started < KNOCK_SECONDS
        ):
            state.crossed_retry = state.readd = True
            return False
        if now - state.knock_started >= KNOCK_SECONDS:
            was = state.candidates[state.index][0]
            state.index += 1
            state.knock_started = now
            if state.index >= len(state.candidates):
                state.index = 0
                state.pause_until = now + RETRY_SECONDS if relayed else now
            # the same address again: WireGuard retries it by itself every 5 s
            state.readd = state.candidates[state.index][0] != was
        return False

    def paths(self, peers: Mapping[str, Peer], actual: Mapping[str, PeerState]) -> list[PeerPath]:
        """Each peer's path as of the last :meth:`target`, with what WireGuard reports
        (``actual``: public key -> state) for endpoints and handshakes."""
        result = []
        carrier = self._carrier
        for peer_id in sorted(peers):
            peer = peers[peer_id]
            key = peer.public_key or ""
            state = self._state.get(key)
            if state is None:
                continue
            wireguard = actual.get(key)
            last = wireguard.latest_handshake if wireguard is not None else 0.0
            path: Path
            endpoint: str | None
            if state.direct:
                kind = state.candidates[state.index][1] if state.candidates else None
                path = "local" if kind == "lan" else "direct"
                endpoint = (
                    (wireguard.in_use or wireguard.endpoint) if wireguard is not None else None
                )
            elif carrier is not None:
                path, endpoint = "relay", carrier.endpoint
            else:
                path, endpoint = "none", None  # knocking, with no relay to fall back on
            result.append(PeerPath(peer_id, path, endpoint, last if last > 0 else None))
        return result
