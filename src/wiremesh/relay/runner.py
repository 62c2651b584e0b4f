"""The relay's loop: check in with the server every second, mirror its device list into
the interface, report the endpoints WireGuard saw devices come from."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from typing import Final

import httpx

from wiremesh.agent.backend import AddPeer, PeerChange, PeerState, RemovePeer, UpdatePeer
from wiremesh.agent.tls import tls_context
from wiremesh.protocol import Relay
from wiremesh.protocol.relay import (
    MAX_OBSERVED,
    RELAY_SYNC_PATH,
    Observed,
    RelaySyncRequest,
    RelaySyncResponse,
)
from wiremesh.relay.interface import RelayInterface

logger = logging.getLogger("wiremesh.relay")

SYNC_INTERVAL: Final = 1.0


def peer_changes(
    wanted: dict[str, frozenset[str]], actual: dict[str, PeerState]
) -> list[PeerChange]:
    """Peers to remove, update and add so the interface holds exactly ``wanted``."""
    changes: list[PeerChange] = [RemovePeer(key) for key in sorted(actual) if key not in wanted]
    for key in sorted(wanted):
        have = actual.get(key)
        if have is None:
            changes.append(AddPeer(key, wanted[key]))
        elif have.allowed_ips != wanted[key]:
            changes.append(UpdatePeer(key, wanted[key]))
    return changes


class RelayRunner:
    def __init__(
        self,
        server_url: str,
        token: str,
        identity: Relay,
        interface: RelayInterface,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = server_url.rstrip("/") + RELAY_SYNC_PATH
        self.tls = tls
        """What an https:// server is verified with; None: the system's CAs (as the agent)."""
        self.token = token
        self.identity = identity
        self.interface = interface
        self.version = 0
        self.reported: dict[str, str] = {}
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5.0, verify=self.tls or tls_context()) as client:
            while not self._stop.is_set():
                try:
                    await self.sync_once(client)
                except (httpx.HTTPError, ValueError) as exc:
                    logger.warning("sync with %s failed: %s", self.url, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), SYNC_INTERVAL)

    async def sync_once(self, client: httpx.AsyncClient) -> None:
        actual = await self.interface.peers()
        observed = [
            Observed(public_key=key, endpoint=state.endpoint)
            for key, state in sorted(actual.items())
            if state.endpoint is not None and self.reported.get(key) != state.endpoint
        ][:MAX_OBSERVED]
        request = RelaySyncRequest(relay=self.identity, version=self.version, observed=observed)
        content = request.model_dump_json()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        try:
            response = await client.post(self.url, content=content, headers=headers)
        except httpx.RemoteProtocolError:
            # The server closed the kept-alive connection as this request went out (its idle
            # timeout is 5 s): one immediate retry on a new connection, rather than a missed
            # check-in that could take the relay off the list (3 s).
            response = await client.post(self.url, content=content, headers=headers)
        if response.status_code in (401, 403):
            raise ValueError(f"the server refused this relay: {response.text}")
        response.raise_for_status()
        answer = RelaySyncResponse.model_validate_json(response.text)
        for item in observed:
            self.reported[item.public_key] = item.endpoint
        if answer.devices is None or answer.orgs is None:
            return
        await self.interface.set_org_networks(org.network for org in answer.orgs)
        wanted = {
            device.public_key: frozenset({f"{ipaddress.ip_address(device.virtual_ip)}/32"})
            for device in answer.devices
        }
        changes = peer_changes(wanted, actual)
        if changes:
            await self.interface.apply(changes)
            logger.info("relay: %d peer changes, %d devices", len(changes), len(wanted))
        for key in list(self.reported):
            if key not in wanted:
                del self.reported[key]
        self.version = answer.version
