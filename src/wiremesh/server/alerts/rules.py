"""The alert rules, pure: what is due, decided over a snapshot of settings and devices.

No I/O here: the repository reads the snapshot, the service acts on the answer, and the
conditional UPDATEs of the repository keep two replicas from acting twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from wiremesh.server.presence.models import ConnectionState

DEFAULT_DEBOUNCE_SECONDS = 3600
MAX_THRESHOLD_SECONDS = 30 * 86400
MAX_DEBOUNCE_SECONDS = 7 * 86400

_TIMED_OUT = "stopped answering heartbeats (timed out)"
_REASONS = {
    # What the transition passes: the session's end reason.
    "heartbeat_timeout": _TIMED_OUT,
    "client_closed": "the agent closed its connection",
    "server_lost": "the server replica it was connected to stopped answering",
    # What the offline checker passes: the session's status.
    ConnectionState.TIMEOUT.value: _TIMED_OUT,
    ConnectionState.DISCONNECTED.value: "disconnected",
}


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """An org's enabled alert settings."""

    offline_threshold: timedelta
    debounce: timedelta
    enabled_at: datetime | None

    @property
    def alerts_at_once(self) -> bool:
        """No threshold: the transition itself alerts; otherwise the checker does, later."""
        return self.offline_threshold <= timedelta(0)

    def window_start(self, now: datetime) -> datetime:
        """An alert that went out after this instant still debounces the next one."""
        return now - self.debounce


@dataclass(frozen=True, slots=True)
class OfflineDevice:
    """A device whose latest session has ended, as the checker sees it."""

    org_id: int
    peer_id: str
    hostname: str
    virtual_ip: str
    reason: str
    offline_since: datetime
    seen_at: datetime | None = None
    last_alert_at: datetime | None = None


def overdue(
    policy: AlertPolicy, device: OfflineDevice, now: datetime, not_before: datetime | None
) -> bool:
    """Whether the checker should alert now: offline past the threshold (counted from no
    earlier than ``not_before``), not seen since, and outside the debounce window."""
    since = device.offline_since
    if policy.enabled_at is not None and since < policy.enabled_at:
        return False  # offline since before alerts were switched on
    counted_from = max(since, not_before) if not_before is not None else since
    if now - counted_from < policy.offline_threshold:
        return False
    if device.seen_at is not None and device.seen_at > since:
        return False  # seen after that session ended: it is (or was) back
    return device.last_alert_at is None or now - device.last_alert_at >= policy.debounce


def reason_text(reason: str) -> str:
    """How an offline mail words why the device went offline: ``reason`` is a session's end
    reason (``heartbeat_timeout``, ``client_closed``, ``protocol_<close code>``, a close code's
    name ...) or, from the offline checker, its status (``timeout``, ``disconnected``)."""
    if reason in _REASONS:
        return _REASONS[reason]
    if reason.startswith("protocol_"):
        return f"disconnected after a protocol error ({_words(reason.removeprefix('protocol_'))})"
    if reason.startswith("client_closed_"):
        return f"the agent closed its connection (close code {reason.rpartition('_')[2]})"
    return f"disconnected ({_words(reason)})"


def _words(name: str) -> str:
    return name.replace("_", " ")
