"""Every organization's view, the same on every replica: built from one snapshot, then moved
only by events, in id order.

An org is loaded when first needed (a session of it opens here). While it loads, its events
are held; once the snapshot is in, those newer than the snapshot's version are applied and
the rest were in the snapshot already. So the view never misses an event or applies one
twice, however the load and the event reader interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wiremesh.protocol import PeerRemove, PeerUpsert
from wiremesh.server.devices.models import VirtualIPMapping
from wiremesh.server.devices.repository import AgentCredential
from wiremesh.server.events.schemas import (
    AnyEvent,
    DeviceChanged,
    DeviceRemoved,
    EndpointChanged,
    EndpointObserved,
    OrgDeleted,
    RelayChanged,
    SessionEnded,
    SessionOpened,
)
from wiremesh.server.presence import repository
from wiremesh.server.presence.roster import (
    DeviceIdentity,
    OrgRoster,
    PeerChange,
    Presence,
    format_endpoint,
)


def identity_of(device: VirtualIPMapping | AgentCredential, network: str) -> DeviceIdentity:
    return DeviceIdentity(
        device_id=device.id,
        org_id=device.org_id,
        user_id=device.user_id,
        peer_id=device.peer_id,
        virtual_ip=device.virtual_ip,
        hostname=device.hostname,
        public_key=device.public_key,
        network=network,
    )


def identity_from_event(event: DeviceChanged) -> DeviceIdentity:
    return DeviceIdentity(
        device_id=event.device_id,
        org_id=event.org_id,
        user_id=event.user_id,
        peer_id=event.peer_id,
        virtual_ip=event.virtual_ip,
        hostname=event.hostname,
        public_key=event.public_key,
        network=event.network,
    )


@dataclass(frozen=True, slots=True)
class OrgChange:
    org_id: int
    change: PeerChange


def apply_to_roster(roster: OrgRoster, event: AnyEvent) -> PeerChange | None:
    """One event on one roster; pure, so it is tested by feeding events."""
    if event.id and event.id <= roster.version:
        return None
    if event.id:
        roster.version = event.id
    match event:
        case DeviceChanged():
            return roster.upsert_device(identity_from_event(event))
        case DeviceRemoved():
            return roster.remove_device(event.peer_id)
        case SessionOpened():
            presence = Presence(
                event.connection_id,
                event.server_id,
                format_endpoint(event.public_ip, event.public_port),
                tuple(event.lan),
            )
            return roster.session_opened(event.peer_id, presence)
        case SessionEnded():
            return roster.session_ended(event.peer_id, event.connection_id)
        case EndpointChanged():
            return roster.endpoint_changed(
                event.peer_id,
                event.connection_id,
                format_endpoint(event.public_ip, event.public_port),
            )
        case EndpointObserved():
            return roster.endpoint_observed(event.peer_id, event.endpoint)
        case OrgDeleted() | RelayChanged():
            return None
    return None


class OrgDirectory:
    """The rosters of the orgs this replica serves, kept current by the event reader."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.rosters: dict[int, OrgRoster] = {}
        self._loading: dict[int, tuple[asyncio.Future[OrgRoster], list[AnyEvent]]] = {}

    async def roster(self, org_id: int) -> OrgRoster:
        """The org's roster, loaded once; concurrent callers share one load."""
        roster = self.rosters.get(org_id)
        if roster is not None:
            return roster
        loading = self._loading.get(org_id)
        if loading is not None:
            return await asyncio.shield(loading[0])
        future: asyncio.Future[OrgRoster] = asyncio.get_running_loop().create_future()
        held: list[AnyEvent] = []
        self._loading[org_id] = (future, held)
        try:
            async with self.sessionmaker() as session:
                snapshot = await repository.org_snapshot(session, org_id)
            roster = OrgRoster(org_id=org_id, version=snapshot.version)
            network = snapshot.network or ""
            for device in snapshot.devices:
                roster.upsert_device(identity_of(device, network))
            for row in snapshot.live:
                if row.peer_id in roster.devices:
                    roster.session_opened(
                        row.peer_id,
                        Presence(
                            row.connection_id,
                            row.server_id,
                            format_endpoint(row.public_ip, row.public_port),
                            tuple(snapshot.lan.get(row.peer_id, ())),
                        ),
                    )
            for peer_id, endpoint in snapshot.observed.items():
                roster.endpoint_observed(peer_id, endpoint)
            for event in held:
                apply_to_roster(roster, event)
            self.rosters[org_id] = roster
            future.set_result(roster)
            return roster
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: concurrent waiters get it, nobody else must
            raise
        finally:
            del self._loading[org_id]

    def apply(self, events: Sequence[AnyEvent]) -> list[OrgChange]:
        """Apply events in order; the peer changes to send, per org."""
        changes: list[OrgChange] = []
        for event in events:
            loading = self._loading.get(event.org_id)
            if loading is not None:
                loading[1].append(event)
            if isinstance(event, OrgDeleted):
                self.rosters.pop(event.org_id, None)
                continue
            roster = self.rosters.get(event.org_id)
            if roster is None:
                continue
            change = apply_to_roster(roster, event)
            if change is not None:
                changes.append(OrgChange(event.org_id, change))
        return changes

    async def reload(self) -> list[OrgChange]:
        """Events were missed (pruned before this replica read them): read every loaded org
        afresh and return what differs from what its sessions were told."""
        stale, self.rosters = self.rosters, {}
        changes: list[OrgChange] = []
        for org_id, old in stale.items():
            new = await self.roster(org_id)
            for peer_id in old.devices.keys() | new.devices.keys():
                before, after = old.peer(peer_id), new.peer(peer_id)
                if after is None:
                    changes.append(OrgChange(org_id, PeerRemove(peer_id=peer_id)))
                elif before != after:
                    changes.append(OrgChange(org_id, PeerUpsert(peer=after)))
        return changes

    def is_online(self, org_id: int, peer_id: str) -> bool | None:
        """Whether the device is online anywhere; None when this replica has no view of it."""
        roster = self.rosters.get(org_id)
        return None if roster is None else roster.is_online(peer_id)
