"""The last known peers and relays on disk, so a restart without the server still meshes.

The session loop remembers what the server last said (peers, relays, this device's public
address) and :meth:`PeerCache.save` writes it to ``peers.json`` in the state dir when it
changed: atomically, readable by the owner only (peers' addresses say where the devices
are). When the server cannot be reached at start, :func:`load_peer_cache` gives the agent
the peers to configure; the next welcome replaces them.

A cache that cannot be read (damaged, another format, another enrollment) is ignored with
a warning: it only ever saves time, so nothing depends on it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from wiremesh.agent.state import write_private_file
from wiremesh.protocol import Peer, Relay

__all__ = ["PEER_CACHE_FILE", "KnownPeers", "PeerCache", "load_peer_cache"]

logger = logging.getLogger("wiremesh.agent")

PEER_CACHE_FILE: Final = "peers.json"
CACHE_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class KnownPeers:
    """What the server last said about the network around this device."""

    peers: Mapping[str, Peer]
    """By peer_id, as :attr:`wiremesh.protocol.AgentSession.peers`."""
    relays: tuple[Relay, ...] = ()
    public_ip: str | None = None
    """This device's public address as the server saw it (orders same-NAT candidates)."""
    saved_at: float | None = field(default=None, compare=False)
    """Unix time the cache was written (``None``: not from disk)."""


def _document(owner: str, known: KnownPeers) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "peer_id": owner,
        "public_ip": known.public_ip,
        "peers": [known.peers[key].model_dump(mode="json") for key in sorted(known.peers)],
        "relays": [relay.model_dump(mode="json") for relay in known.relays],
    }


class PeerCache:
    """Writes ``peers.json`` for the device ``owner`` (its peer_id), only when it changed."""

    def __init__(self, directory: Path, owner: str) -> None:
        self.path = directory / PEER_CACHE_FILE
        self.owner = owner
        self._written: dict[str, Any] | None = None
        self.writes = 0
        """Files written by this process (for tests)."""

    def save(self, known: KnownPeers) -> None:
        """Write ``known`` unless it is what was written last (best effort: a full disk or
        a read-only state dir costs a warning, never the session)."""
        document = _document(self.owner, known)
        if document == self._written:
            return
        data = json.dumps({**document, "saved_at": time.time()}, indent=1) + "\n"
        try:
            write_private_file(self.path, data.encode("utf-8"))
        except OSError as exc:
            logger.warning("cannot save the peer cache %s: %s", self.path, exc)
            return
        self._written = document
        self.writes += 1


def load_peer_cache(directory: Path, owner: str) -> KnownPeers | None:
    """The cached peers of device ``owner``; ``None`` when there is no usable cache (with a
    warning unless there is no file at all)."""
    path = directory / PEER_CACHE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the peer cache %s: cannot read it (%s)", path, exc)
        return None
    try:
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            raise ValueError(f"not a format {CACHE_FORMAT} peer cache")
        if data.get("peer_id") != owner:
            raise ValueError("it belongs to another enrollment of this machine")
        peers = [Peer.model_validate(item) for item in data["peers"]]
        relays = tuple(Relay.model_validate(item) for item in data["relays"])
        public_ip = data.get("public_ip")
        saved_at = data.get("saved_at")
        if public_ip is not None and not isinstance(public_ip, str):
            raise ValueError("public_ip is not a string")
        if not isinstance(saved_at, int | float):
            raise ValueError("saved_at is not a time")
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        summary = str(exc).splitlines()[0]
        logger.warning("ignoring the peer cache %s: %s", path, summary)
        return None
    return KnownPeers({peer.peer_id: peer for peer in peers}, relays, public_ip, float(saved_at))


def describe(known: KnownPeers) -> str:
    """``3 peers and 1 relay cached 2026-12-02 01:02:03 UTC`` for logs."""
    relays = len(known.relays)
    when = (
        time.strftime(" cached %Y-%m-%d %H:%M:%S UTC", time.gmtime(known.saved_at))
        if known.saved_at is not None
        else ""
    )
    return (
        f"{len(known.peers)} peer{'s' if len(known.peers) != 1 else ''} and "
        f"{relays} relay{'s' if relays != 1 else ''}{when}"
    )


def known_from(
    peers: Mapping[str, Peer], relays: Sequence[Relay], public_ip: str | None
) -> KnownPeers:
    """A snapshot of a session's view (its mapping follows later changes; this does not)."""
    return KnownPeers(dict(peers), tuple(relays), public_ip)
