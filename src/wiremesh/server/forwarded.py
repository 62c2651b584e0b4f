"""The client's address behind trusted proxies: one pure function, used for every request.

A proxy appends the address it received the request from to ``X-Forwarded-For`` (or adds a
``Forwarded`` element, RFC 7239), either in the existing header line or as a new line. A
client can send the header itself, so only the hops that trusted proxies added count: all
header lines are joined in order and walked from the right, and the first hop that is not a
trusted proxy is the client. Reading only the first line believed a line the client sent
before the proxy's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it: ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``,
    ``[2001:db8::1]`` or ``[2001:db8::1]:80``; IPv4-mapped IPv6 becomes IPv4. None if not."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and not text[end + 1 :].startswith(":")):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def forwarded_hops(lines: Iterable[str], header: ForwardedHeader) -> list[str]:
    """The hops of every header line, in order (leftmost = farthest from us).

    For ``Forwarded`` a hop is its element's ``for=`` value; an element without one is an
    empty hop, which stops the walk like any other unparsable hop.
    """
    hops: list[str] = []
    for line in lines:
        if header == "x-forwarded-for":
            hops.extend(hop.strip() for hop in line.split(",") if hop.strip())
            continue
        for element in _split_outside_quotes(line, ","):
            if not element.strip():
                continue
            value = ""
            for pair in _split_outside_quotes(element, ";"):
                name, _, raw = pair.partition("=")
                if name.strip().lower() == "for":
                    value = raw.strip()
            hops.append(value)
    return hops


def client_address(
    peer: str | None,
    header_lines: Sequence[str],
    trusted: Sequence[IPNetwork],
    header: ForwardedHeader = "x-forwarded-for",
) -> str | None:
    """The client's address: ``peer`` unless it is a trusted proxy, else the rightmost
    forwarded hop that is not one (every header line counted, right to left).

    A hop that is not an address (``unknown``, an obfuscated name, garbage) ends the walk:
    the nearest trusted proxy is the best that is known. When every hop is trusted, the
    leftmost one is the client.
    """
    if peer is None:
        return None
    nearest = parse_address(peer)
    if nearest is None or not trusted:
        return peer
    if not _is_trusted(nearest, trusted):
        return str(nearest)
    for hop in reversed(forwarded_hops(header_lines, header)):
        address = parse_address(hop)
        if address is None:
            return str(nearest)
        if not _is_trusted(address, trusted):
            return str(address)
        nearest = address
    return str(nearest)


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)
