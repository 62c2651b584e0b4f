"""What a relay and the server say to each other (``POST /api/v1/relay/sync``). No I/O.

A relay calls sync about once a second. The call is its heartbeat (a relay silent for
``RELAY_TIMEOUT`` is taken off every agent's list), carries the device endpoints it saw
change, and returns the devices to forward between whenever they changed.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from .messages import Endpoint, IpAddress, Network, Relay, WireGuardKey, _Model

__all__ = [
    "MAX_OBSERVED",
    "RELAY_SYNC_PATH",
    "RELAY_TIMEOUT",
    "Observed",
    "RelayDevice",
    "RelayOrg",
    "RelaySyncRequest",
    "RelaySyncResponse",
]

RELAY_SYNC_PATH: Final = "/api/v1/relay/sync"
RELAY_TIMEOUT: Final = 3.0
"""Seconds without a sync after which a relay counts as down."""
MAX_OBSERVED: Final = 1000
"""Endpoint reports per sync; a relay with more sends the rest next time."""


class Observed(_Model):
    """A device's packets reached the relay from ``endpoint``: the mapping its NAT made."""

    public_key: WireGuardKey
    endpoint: Endpoint


class RelaySyncRequest(_Model):
    relay: Relay
    version: int = Field(default=0, ge=0)
    """The ``version`` of the last device list the relay applied (0: none yet)."""
    observed: list[Observed] = Field(default_factory=list, max_length=MAX_OBSERVED)


class RelayOrg(_Model):
    """One org's network: the relay forwards only between addresses of the same one."""

    id: int
    network: Network


class RelayDevice(_Model):
    public_key: WireGuardKey
    virtual_ip: IpAddress


class RelaySyncResponse(_Model):
    """``orgs`` and ``devices`` are ``None`` when nothing changed since ``version``."""

    version: int
    orgs: list[RelayOrg] | None = None
    devices: list[RelayDevice] | None = None
