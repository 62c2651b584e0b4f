"""Command lines for ``wg`` and ``ip``, and parsers for what they print. Pure: no I/O.

Both backends configure WireGuard the same way, through ``wg`` (which speaks netlink to
the kernel module and the UAPI socket to wireguard-go) and ``ip``. Keeping the command
construction and the parsing here makes them testable with sample output alone.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from wiremesh.agent.backend import (
    DEFAULT_KEEPALIVE,
    MTU_RANGE,
    AddPeer,
    PeerChange,
    RemovePeer,
    UpdatePeer,
)
from wiremesh.agent.keys import InvalidKey, decode_key

__all__ = [
    "PERSISTENT_KEEPALIVE",
    "DumpError",
    "InterfaceDump",
    "PeerDump",
    "ip_link_mtu",
    "link_kind",
    "parse_dump",
    "validate_interface_name",
    "wg_set_device",
    "wg_set_peers",
]

PERSISTENT_KEEPALIVE: Final = DEFAULT_KEEPALIVE
"""Seconds between keepalives to every peer unless ``--keepalive`` says otherwise."""

_NONE: Final = "(none)"
_INTERFACE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_ENDPOINT: Final = re.compile(r"(?:\[(?P<v6>[^\]\s]+)\]|(?P<v4>[0-9.]+)):(?P<port>\d{1,5})")


def validate_interface_name(name: str) -> str:
    """``name`` if Linux accepts it as an interface name and it cannot pass for an option.

    1 to 15 characters (IFNAMSIZ less the NUL), letters, digits, ``_ . -``, not starting
    with ``-`` or ``.``; raises ``ValueError`` with the rule otherwise.
    """
    if not _INTERFACE_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a usable interface name: 1 to 15 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def _check_key(key: str) -> str:
    try:
        decode_key(key)
    except InvalidKey as exc:
        raise ValueError(f"{key!r} is {exc}") from None
    return key


def _check_allowed_ips(allowed_ips: Iterable[str]) -> str:
    networks = []
    for item in allowed_ips:
        try:
            networks.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network for allowed-ips ({exc})") from None
    return ",".join(sorted(networks))


def _check_endpoint(endpoint: str) -> str:
    match = _ENDPOINT.fullmatch(endpoint)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{endpoint!r} is not an endpoint (ip:port or [ipv6]:port)")
    try:
        address = ipaddress.ip_address(match["v6"] or match["v4"])
    except ValueError:
        raise ValueError(f"{endpoint!r} is not an endpoint (ip:port or [ipv6]:port)") from None
    if (address.version == 6) != (match["v6"] is not None):
        raise ValueError(f"{endpoint!r} is not an endpoint (ip:port or [ipv6]:port)")
    return endpoint


def ip_link_mtu(interface: str, mtu: int) -> list[str]:
    """``ip link set`` for the interface's MTU (``MTU_RANGE``; ``ValueError`` outside it)."""
    low, high = MTU_RANGE
    if not low <= mtu <= high:
        raise ValueError(f"MTU {mtu} is not in {low}..{high}")
    return ["ip", "link", "set", "dev", validate_interface_name(interface), "mtu", str(mtu)]


def wg_set_device(interface: str, *, private_key: bool, listen_port: int | None) -> list[str]:
    """``wg set`` for the interface itself.

    With ``private_key`` the key is read from standard input (``/dev/stdin``): the caller
    writes it there, never on the command line. ``listen_port`` 0 lets WireGuard choose.
    """
    argv = ["wg", "set", validate_interface_name(interface)]
    if private_key:
        argv += ["private-key", "/dev/stdin"]
    if listen_port is not None:
        if not 0 <= listen_port <= 65535:
            raise ValueError("listen_port must be 0..65535")
        argv += ["listen-port", str(listen_port)]
    return argv


def wg_set_peers(
    interface: str, changes: Iterable[PeerChange], *, keepalive: int = PERSISTENT_KEEPALIVE
) -> list[str]:
    """One ``wg set`` applying ``changes`` in order; only the peers named are touched.

    A new peer gets its allowed IPs (replacing any) and, when its endpoint is known, that
    endpoint and a persistent keepalive; an update names only what changes (``allowed-ips``
    replaces the peer's list, the session survives), and one that sets an endpoint turns
    the keepalive on too. A removal is ``peer KEY remove``. Every key, network and endpoint
    is checked first, so nothing unexpected reaches ``wg``.

    The keepalive waits for the endpoint because WireGuard sends one the moment it is
    turned on: without an endpoint that send fails ("no known endpoint for peer") and no
    handshake is tried again for the 5 s rekey timeout, even if the endpoint comes right
    after. Turned on together with the endpoint, it starts the handshake at once.

    The changes that turn a keepalive on go last (each keeps its place among its kind, so
    a removal still precedes the re-add of its key): wireguard-go (0.0.20220316) carries
    "keepalive just turned on" from one peer of a ``wg set`` to the peers after it, and
    so would try an immediate handshake, and fail, with a later peer that has no endpoint.
    """

    def turns_keepalive_on(change: PeerChange) -> bool:
        return (
            keepalive > 0
            and isinstance(change, AddPeer | UpdatePeer)
            and change.endpoint is not None
        )

    changes = list(changes)
    ordered = [c for c in changes if not turns_keepalive_on(c)]
    ordered += [c for c in changes if turns_keepalive_on(c)]
    argv = ["wg", "set", validate_interface_name(interface)]
    for change in ordered:
        argv += ["peer", _check_key(change.public_key)]
        if isinstance(change, RemovePeer):
            argv.append("remove")
        elif isinstance(change, AddPeer):
            argv += ["allowed-ips", _check_allowed_ips(change.allowed_ips)]
            if change.endpoint is not None:
                argv += ["endpoint", _check_endpoint(change.endpoint)]
                if keepalive:
                    argv += ["persistent-keepalive", str(keepalive)]
        elif isinstance(change, UpdatePeer):
            if change.allowed_ips is not None:
                argv += ["allowed-ips", _check_allowed_ips(change.allowed_ips)]
            if change.endpoint is not None:
                argv += ["endpoint", _check_endpoint(change.endpoint)]
                if keepalive:  # on already: no-op; off until now: sends at once
                    argv += ["persistent-keepalive", str(keepalive)]
    return argv


class DumpError(ValueError):
    """``wg show <iface> dump`` printed something this parser does not understand."""


@dataclass(frozen=True, slots=True)
class PeerDump:
    """One peer line of ``wg show <iface> dump``."""

    public_key: str
    endpoint: str | None
    """The endpoint WireGuard uses now: the one set, or where the peer last spoke from."""
    allowed_ips: frozenset[str]
    latest_handshake: int
    """Unix time of the last handshake; 0 = never."""
    transfer_rx: int
    transfer_tx: int
    persistent_keepalive: int | None


@dataclass(frozen=True, slots=True)
class InterfaceDump:
    """``wg show <iface> dump``, without the private key (it is dropped while parsing)."""

    public_key: str | None
    listen_port: int
    peers: dict[str, PeerDump]


def _int(text: str, what: str, line: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DumpError(f"line {line}: {what} is not a number") from None
    if value < 0:
        raise DumpError(f"line {line}: {what} is negative")
    return value


def parse_dump(text: str) -> InterfaceDump:
    """Parse ``wg show <iface> dump``: one interface line, then one line per peer.

    The interface line is ``private-key public-key listen-port fwmark``; a peer line is
    ``public-key preshared-key endpoint allowed-ips latest-handshake transfer-rx
    transfer-tx persistent-keepalive``, tab-separated, ``(none)`` or ``off`` for unset
    values. Error messages name line numbers only: the first line holds the private key.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DumpError("empty output")
    head = lines[0].split("\t")
    if len(head) != 4:
        raise DumpError(f"line 1: expected 4 fields, got {len(head)}")
    public_key = None if head[1] == _NONE else head[1]
    listen_port = _int(head[2], "the listen port", 1)
    peers: dict[str, PeerDump] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 8:
            raise DumpError(f"line {number}: expected 8 fields, got {len(fields)}")
        key, _psk, endpoint, allowed, handshake, rx, tx, keepalive = fields
        try:
            decode_key(key)
        except InvalidKey:
            raise DumpError(f"line {number}: the peer's public key is not a key") from None
        ips = frozenset() if allowed == _NONE else frozenset(allowed.split(","))
        peers[key] = PeerDump(
            public_key=key,
            endpoint=None if endpoint == _NONE else endpoint,
            allowed_ips=ips,
            latest_handshake=_int(handshake, "latest-handshake", number),
            transfer_rx=_int(rx, "transfer-rx", number),
            transfer_tx=_int(tx, "transfer-tx", number),
            persistent_keepalive=None
            if keepalive == "off"
            else _int(keepalive, "persistent-keepalive", number),
        )
    return InterfaceDump(public_key=public_key, listen_port=listen_port, peers=peers)


def link_kind(ip_json: str) -> str:
    """The kind of a link from ``ip -details -json link show dev X``.

    ``wireguard`` for a kernel WireGuard interface, ``tun`` for wireguard-go's, ``""``
    for a plain device (no ``linkinfo``).
    """
    try:
        data = json.loads(ip_json)
    except ValueError:
        raise DumpError("`ip -json link show` did not print JSON") from None
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
        raise DumpError("`ip -json link show` printed no single link")
    info = data[0].get("linkinfo")
    kind = info.get("info_kind") if isinstance(info, dict) else None
    return kind if isinstance(kind, str) else ""
