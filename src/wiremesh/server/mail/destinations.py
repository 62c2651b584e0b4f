"""Where an organization's SMTP settings may send: public addresses only, unless allowed.

An org admin chooses their SMTP server. Without this rule they could point it at the
server's own network (loopback, the cloud metadata address, private ranges) and use the
test mail to probe it. The check runs when settings are saved and again at every connection,
on every address the name resolves to, and the transport connects to an address it checked,
so a name that changes its answer (DNS rebinding) gains nothing. The operator's global
settings are exempt, and ``WIREMESH_SMTP_ALLOW_PRIVATE_HOSTS`` lifts the rule for a site
whose organizations run their own internal relays.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import weakref

from wiremesh.server.errors import ApiError

RESOLVE_TIMEOUT = 5.0
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationForbidden(ApiError):
    """422 ``smtp_destination_forbidden``: the host is, or resolves to, a non-public address."""

    def __init__(self, host: str) -> None:
        super().__init__(
            422,
            "smtp_destination_forbidden",
            f"the SMTP server {host!r} is or resolves to a loopback, link-local, private, "
            "shared (CGNAT) or unspecified address, which an organization's SMTP settings may "
            "not use on this server (the operator can allow them)",
        )


def is_forbidden(address: Address) -> bool:
    """True for every address that is not plainly public: loopback, link-local, private
    (RFC 1918, RFC 4193), CGNAT, unspecified, multicast and the other reserved ranges."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return True
    return not address.is_global or address.is_multicast


def literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


RESOLVING_AT_ONCE = 2
_resolving: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
"""One semaphore per event loop (a semaphore belongs to the loop it first waited on)."""


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` has now (an IP literal is its own); raises ``OSError`` when the
    name does not resolve and ``TimeoutError`` when the resolver does not answer in time."""
    address = literal(host)
    if address is not None:
        return [address]
    loop = asyncio.get_running_loop()
    # A resolver that never answers keeps its thread past the timeout: at most a few at
    # once, so a name made to hang cannot take every thread the server's own mail needs.
    gate = _resolving.setdefault(loop, asyncio.Semaphore(RESOLVING_AT_ONCE))
    async with gate, asyncio.timeout(RESOLVE_TIMEOUT):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        resolved = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if resolved not in found:
            found.append(resolved)
    if not found:
        raise OSError(f"{host} has no address")
    return found


async def check_on_save(host: str, port: int) -> None:
    """Refuse a host that is, or now resolves to, a forbidden address. A name that does not
    resolve now is accepted: DNS may be down, and every connection is checked again."""
    try:
        addresses = await resolve(host, port)
    except (OSError, TimeoutError):
        return
    if any(is_forbidden(address) for address in addresses):
        raise DestinationForbidden(host)
