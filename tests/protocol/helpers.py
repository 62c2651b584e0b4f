"""Builders for valid protocol objects, so each test states only what it varies."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

from wiremesh.protocol import (
    Device,
    Heartbeat,
    Peer,
    ServerSession,
    WelcomeMessage,
    encode,
)

CONNECTION_ID = uuid.UUID("6f1b5f4e-1f7c-4b2e-9a52-0f5b1f2e3a4b")


def wg_key(seed: int) -> str:
    """A deterministic, well-formed WireGuard public key (base64 of 32 bytes)."""
    return base64.b64encode(hashlib.sha256(str(seed).encode()).digest()).decode()


def make_peer(index: int, **overrides: Any) -> Peer:
    fields: dict[str, Any] = {
        "peer_id": f"peer-{index}",
        "hostname": f"host-{index}",
        "virtual_ip": f"10.{index // 62500}.{index // 250 % 250}.{index % 250 + 1}",
        "public_key": wg_key(index),
        "endpoint": f"198.51.100.{index % 250 + 1}:{51820 + index % 1000}",
        "online": True,
    }
    fields.update(overrides)
    return Peer(**fields)


def make_welcome(
    peers: list[Peer] | None = None, *, interval: float = 15.0, timeout: float = 50.0
) -> WelcomeMessage:
    return WelcomeMessage(
        connection_id=CONNECTION_ID,
        device=Device(
            peer_id="self", virtual_ip="10.255.255.254", network="10.0.0.0/8", hostname="me"
        ),
        heartbeat=Heartbeat(interval=interval, timeout=timeout),
        peers=[make_peer(1), make_peer(2)] if peers is None else peers,
    )


def frame(**fields: Any) -> str:
    """A JSON text frame built by hand, to send things our own models would refuse."""
    return json.dumps(fields)


def auth_frame(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "type": "auth",
        "version": 1,
        "credential": "wmk_secret",
        "listen_port": 51820,
        "agent_version": "0.1.0",
    }
    fields.update(overrides)
    return frame(**fields)


def established_session(now: float = 0.0, **kwargs: Any) -> ServerSession:
    """A server session that has received auth and had its credential accepted at ``now``."""
    session = ServerSession(now, **kwargs)
    session.receive(auth_frame(), now)
    session.authenticated(now)
    return session


def welcome_frame(**kwargs: Any) -> str:
    return encode(make_welcome(**kwargs))
