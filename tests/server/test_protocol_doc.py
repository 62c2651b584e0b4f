"""docs/protocol.md states the defaults the server and the protocol package really use."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from wiremesh.protocol import (
    DEFAULT_AUTH_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_PER_SECOND,
    DEFAULT_WELCOME_TIMEOUT,
    MAX_MESSAGE_BYTES,
    MAX_SERVER_MESSAGE_BYTES,
)
from wiremesh.server.config import Settings
from wiremesh.server.presence.gateway import PING_JITTER

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def server_default(name: str) -> Any:
    return Settings.model_fields[name].default


def bullet(title: str) -> str:
    """The text of the list item that starts with ``**title**``."""
    start = DOC.index(f"- **{title}**")
    ends = [i for i in (DOC.find("\n- ", start + 1), DOC.find("\n\n", start)) if i != -1]
    return DOC[start : min(ends)]


def stated_default(text: str) -> float:
    match = re.search(r"\(default\s+(\d+(?:\.\d+)?)\s+s\b", text)
    assert match is not None, text
    return float(match.group(1))


@pytest.mark.parametrize(
    ("title", "setting", "constant"),
    [
        ("Auth deadline", "auth_timeout", DEFAULT_AUTH_TIMEOUT),
        ("Pings", "heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL),
        ("Server deadline", "heartbeat_timeout", DEFAULT_HEARTBEAT_TIMEOUT),
    ],
)
def test_stated_timings_are_the_server_and_protocol_defaults(
    title: str, setting: str, constant: float
) -> None:
    text = bullet(title)
    assert stated_default(text) == server_default(setting) == constant
    assert f"`WIREMESH_{setting.upper()}`" in text


def test_agent_welcome_timeout_is_stated_and_outlasts_the_auth_timeout() -> None:
    assert stated_default(bullet("Agent deadline")) == DEFAULT_WELCOME_TIMEOUT
    assert server_default("auth_timeout") < DEFAULT_WELCOME_TIMEOUT


def test_two_lost_pings_claim_holds_with_jittered_default_pings() -> None:
    """The third ping after an answered one goes out at most three jittered intervals
    later; the stated round trip must still beat the deadline."""
    match = re.search(r"round trip is under (\d+) s", bullet("Server deadline"))
    assert match is not None
    round_trip = float(match.group(1))
    interval = server_default("heartbeat_interval")
    timeout = server_default("heartbeat_timeout")
    assert 3 * interval * (1 + PING_JITTER) + round_trip < timeout
    assert f"{PING_JITTER * 100:.0f} %" in bullet("Pings")


def test_rate_limit_and_size_limits() -> None:
    burst = re.search(r"burst of \*\*(\d+)\*\* messages and\s+refills at \*\*(\d+) per second", DOC)
    assert burst is not None
    assert int(burst.group(1)) == DEFAULT_RATE_BURST == server_default("agent_rate_burst")
    rate = float(burst.group(2))
    assert rate == DEFAULT_RATE_PER_SECOND == server_default("agent_rate_per_second")
    assert "`WIREMESH_AGENT_RATE_BURST`" in DOC
    assert "`WIREMESH_AGENT_RATE_PER_SECOND`" in DOC
    assert f"`MAX_MESSAGE_BYTES` = **{MAX_MESSAGE_BYTES}**" in DOC
    assert MAX_SERVER_MESSAGE_BYTES == 16 * 1024 * 1024
    assert "`MAX_SERVER_MESSAGE_BYTES` = **16 MiB**" in DOC


def test_every_setting_the_doc_names_exists() -> None:
    for name in re.findall(r"`WIREMESH_([A-Z_]+)`", DOC):
        assert name.lower() in Settings.model_fields, name
