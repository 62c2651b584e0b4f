"""The relay's WireGuard interface: wireguard-go with IP forwarding, no overlay address.

Every device is a peer with its virtual IP as a /32 and no endpoint: devices keep a
keepalive towards the relay, so WireGuard learns (and ``wg show`` reports) the mapping
each device's NAT made. A packet from one device to another enters and leaves the same
interface; an nftables set of ``network . network`` pairs lets it through only when both
addresses are in the same organization's network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import ClassVar, Final

from wiremesh.agent.backend import DeviceConfig
from wiremesh.agent.wireguard.userspace import WireGuardGoBackend
from wiremesh.agent.wireguard.wgtools import wg_set_device

NFT_TABLE: Final = "wmrelay"
DEFAULT_POOL: Final = "100.64.0.0/10"


def org_ruleset(interface: str, networks: Iterable[str]) -> str:
    """The ``nft -f`` input that (re)creates the relay's table atomically."""
    elements = sorted({str(ipaddress.IPv4Network(net)) for net in networks})
    element_text = ", ".join(f"{net} . {net}" for net in elements)
    set_elements = f"elements = {{ {element_text} }}" if elements else ""
    return f"""table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
    set same_org {{ type ipv4_addr . ipv4_addr; flags interval; {set_elements} }}
    counter cross_org {{ }}
    chain forward {{ type filter hook forward priority filter; policy accept;
        iifname "{interface}" oifname "{interface}" ip saddr . ip daddr @same_org accept
        iifname "{interface}" counter name "cross_org" drop
    }}
}}
"""


class RelayInterface(WireGuardGoBackend):
    """wireguard-go configured as a forwarding hub. The ``address`` of the device config is
    the overlay pool routed into the interface, not an address of its own."""

    name: ClassVar[str] = "relay"

    def __init__(self, interface: str) -> None:
        super().__init__(interface, keepalive=0)

    async def _configure(
        self, device: DeviceConfig, previous: DeviceConfig | None, *, adopted: bool
    ) -> None:
        await self.runner.run(
            wg_set_device(self.interface, private_key=True, listen_port=device.listen_port),
            stdin=device.private_key + "\n",
        )
        self._listen_port = device.listen_port
        for key, value in (
            ("net.ipv4.ip_forward", "1"),
            # packets leave by the interface they came in: no ICMP redirects into the tunnel
            ("net.ipv4.conf.all.send_redirects", "0"),
            (f"net.ipv4.conf.{self.interface}.send_redirects", "0"),
        ):
            await self.runner.run(["sysctl", "-q", "-w", f"{key}={value}"])
        await self.runner.run(["ip", "link", "set", "dev", self.interface, "up"])
        pool = str(device.address.network)
        await self.runner.run(["ip", "route", "replace", pool, "dev", self.interface])

    async def set_org_networks(self, networks: Iterable[str]) -> None:
        await self.runner.run(["nft", "-f", "-"], stdin=org_ruleset(self.interface, networks))

    async def remove_rules(self) -> None:
        await self.runner.run(["nft", "delete", "table", "inet", NFT_TABLE])
