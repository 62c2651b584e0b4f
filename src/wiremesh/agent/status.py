"""What the running agent publishes about itself, for ``wiremesh agent status``.

The agent writes ``status.json`` in its state dir (atomically, readable by its owner only)
when its connection changes and, while connected, at most every ``STATUS_INTERVAL``
seconds as handshakes and byte counts move. ``status`` reads it back and tells a live
report from one left by an agent that is gone: the file names the process that wrote it.
Times are unix seconds; ages are worked out by the reader, so a report never goes stale
in what it claims.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from wiremesh.agent.backend import PeerState
from wiremesh.agent.paths import PeerPath
from wiremesh.protocol import Peer

STATUS_FILE: Final = "status.json"
STATUS_INTERVAL: Final = 2.0
"""While connected, the file is rewritten at most this often (on a path tick)."""

Connection = Literal["connecting", "connected", "disconnected", "refused", "stopped"]


@dataclass(frozen=True, slots=True)
class PeerStatus:
    peer_id: str
    hostname: str | None
    virtual_ip: str
    online: bool
    """As the server last said."""
    path: str
    endpoint: str | None
    last_handshake: float | None
    rx_bytes: int
    tx_bytes: int


@dataclass(slots=True)
class AgentStatus:
    """The running agent's view of itself; :meth:`write` publishes it."""

    pid: int = field(default_factory=os.getpid)
    connection: Connection = "connecting"
    since: float = field(default_factory=time.time)
    """When ``connection`` last changed."""
    server: str | None = None
    last_contact: float | None = None
    """When a frame last came from the server."""
    reason: str | None = None
    """Why the last connection ended (close code and reason), if it did."""
    peers: list[PeerStatus] = field(default_factory=list)

    def set_connection(self, connection: Connection, reason: str | None = None) -> bool:
        """Change the state (``since`` moves only on a change); whether it changed."""
        if reason is not None:
            self.reason = reason
        if connection == self.connection:
            return False
        self.connection = connection
        self.since = time.time()
        return True

    def set_peers(
        self,
        peers: Mapping[str, Peer],
        paths: Sequence[PeerPath],
        actual: Mapping[str, PeerState],
    ) -> None:
        by_id = {path.peer_id: path for path in paths}
        rows = []
        for peer_id in sorted(peers):
            peer = peers[peer_id]
            path = by_id.get(peer_id)
            state = actual.get(peer.public_key or "")
            handshake = state.latest_handshake if state is not None else 0.0
            rows.append(
                PeerStatus(
                    peer_id=peer_id,
                    hostname=peer.hostname,
                    virtual_ip=peer.virtual_ip,
                    online=peer.online,
                    path=path.path if path is not None else "none",
                    endpoint=path.endpoint if path is not None else None,
                    last_handshake=handshake if handshake > 0 else None,
                    rx_bytes=state.rx_bytes if state is not None else 0,
                    tx_bytes=state.tx_bytes if state is not None else 0,
                )
            )
        self.peers = rows

    def write(self, directory: Path) -> None:
        """Replace the status file in one step (best effort: a full disk must not stop the
        agent)."""
        data = {**asdict(self), "written_at": time.time()}
        target = directory / STATUS_FILE
        temporary = directory / f".{STATUS_FILE}.{self.pid}.tmp"
        with contextlib.suppress(OSError):
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                json.dump(data, out, indent=1)
                out.write("\n")
            os.replace(temporary, target)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def read_status(directory: Path, now: float | None = None) -> dict[str, Any] | None:
    """The published status with ages added, ``connection: stopped`` when its writer is
    gone; ``None`` when no agent ever ran with this state dir (or the file is unreadable)."""
    try:
        data = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    now = time.time() if now is None else now
    if data.get("connection") not in ("stopped", "refused") and not _alive(data["pid"]):
        data["connection"] = "stopped"
        data["reason"] = "the agent process is not running"
    if isinstance(data.get("last_contact"), int | float):
        data["last_contact_age"] = round(now - data["last_contact"], 1)
    for peer in data.get("peers") or []:
        if isinstance(peer, dict) and isinstance(peer.get("last_handshake"), int | float):
            peer["handshake_age"] = round(now - peer["last_handshake"], 1)
    return data


def _when(stamp: float, now: float) -> str:
    moment = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
    return f"{moment} ({_age(now - stamp)} ago)"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def render_status(data: Mapping[str, Any] | None, now: float | None = None) -> list[str]:
    """The lines ``agent status`` prints under the enrollment for :func:`read_status`'s
    result."""
    if data is None:
        return ["agent:      has not run with this state dir"]
    now = time.time() if now is None else now
    connection = str(data.get("connection"))
    lines = [f"agent:      {connection} since {_when(float(data.get('since') or 0), now)}"]
    if data.get("reason") and connection != "connected":
        lines.append(f"reason:     {data['reason']}")
    if data.get("server"):
        lines.append(f"server:     {data['server']}")
    if isinstance(data.get("last_contact"), int | float):
        lines.append(f"contact:    {_when(float(data['last_contact']), now)}")
    peers = [peer for peer in data.get("peers") or [] if isinstance(peer, dict)]
    if connection not in ("connecting", "connected", "disconnected") or not peers:
        return lines
    header = ("PEER", "VIRTUAL IP", "ONLINE", "PATH", "ENDPOINT", "HANDSHAKE", "RX", "TX")
    rows = [header]
    for peer in peers:
        handshake = peer.get("last_handshake")
        rows.append(
            (
                str(peer.get("hostname") or peer.get("peer_id")),
                str(peer.get("virtual_ip")),
                "yes" if peer.get("online") else "no",
                str(peer.get("path")),
                str(peer.get("endpoint") or "-"),
                f"{_age(now - handshake)} ago" if isinstance(handshake, int | float) else "never",
                _bytes(int(peer.get("rx_bytes") or 0)),
                _bytes(int(peer.get("tx_bytes") or 0)),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines.append("peers:")
    lines.extend(
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
    return lines
