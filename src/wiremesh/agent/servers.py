"""The server URLs an agent knows, and the order in which it tries them.

An organization may run several server replicas on one database; every replica accepts
every device, so the agent keeps an ordered list and moves on when one is away. Both
parts here are pure (no I/O, no clock): the state file validates with
:func:`normalize_server_urls` and the session loop steps through a :class:`ServerRotation`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from wiremesh import __version__
from wiremesh.protocol.urls import AGENT_WEBSOCKET_PATH

__all__ = [
    "USER_AGENT",
    "InvalidServerURL",
    "ServerRotation",
    "normalize_server_url",
    "normalize_server_urls",
    "websocket_url",
]

USER_AGENT: Final = f"wiremesh-agent/{__version__}"
"""Sent with every request and WebSocket handshake, so server logs show agent versions."""


def websocket_url(server_url: str) -> str:
    """The agent WebSocket URL under ``server_url`` (ws:// for http, wss:// for https)."""
    parts = urlsplit(server_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + AGENT_WEBSOCKET_PATH, "", ""))


class InvalidServerURL(ValueError):
    """A server URL (or list) that cannot be used; the message says what is wrong."""


def normalize_server_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidServerURL(
            f"the server URL must look like https://wiremesh.example.com, not {url!r}"
        )
    if parts.query or parts.fragment:
        raise InvalidServerURL("the server URL must not have a query or fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def normalize_server_urls(urls: Iterable[str]) -> tuple[str, ...]:
    """At least one URL, each normalized, none twice (after normalizing), order kept."""
    if isinstance(urls, str):  # a str is an Iterable[str] too, of one-letter "URLs"
        raise TypeError("expected a list of server URLs, got one string")
    normalized: list[str] = []
    for url in urls:
        candidate = normalize_server_url(url)
        if candidate in normalized:
            raise InvalidServerURL(f"the server URL {candidate} is listed twice")
        normalized.append(candidate)
    if not normalized:
        raise InvalidServerURL("at least one server URL is needed")
    return tuple(normalized)


class ServerRotation:
    """Which server to try next, and when a whole round of them has failed.

    The agent stays with a server while it works. When a connection attempt fails or a
    session ends for a reason that is not final, it moves to the next URL (after the last
    comes the first) and tries it at once; only when every URL has failed in a row, one
    round, should it wait its backoff. A session that got the server's welcome starts the
    round again, so a replica that dies sends its agents to the next one without delay.
    With one URL every failure is a round: the agent backs off after each, as it always has.
    """

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("a rotation needs at least one server URL")
        self._urls = tuple(urls)
        self._index = 0
        self._failures = 0

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    @property
    def current(self) -> str:
        """The URL to connect to next (or connected to now)."""
        return self._urls[self._index]

    def failed(self) -> bool:
        """The current server failed: move to the next one.

        True when this failure completes a round (every URL failed since the last welcome
        or the last round): the caller waits its backoff before the next attempt.
        """
        self._index = (self._index + 1) % len(self._urls)
        self._failures += 1
        if self._failures < len(self._urls):
            return False
        self._failures = 0
        return True

    def connected(self) -> None:
        """The current server welcomed this device: a new round starts."""
        self._failures = 0

    def replace(self, urls: Sequence[str]) -> bool:
        """Follow a changed list; whether it changed.

        The current URL stays next if it is still listed, otherwise the new first one is;
        the new list gets a whole round before the next backoff.
        """
        new = tuple(urls)
        if not new:
            raise ValueError("a rotation needs at least one server URL")
        if new == self._urls:
            return False
        self._index = new.index(self.current) if self.current in new else 0
        self._urls = new
        self._failures = 0
        return True
