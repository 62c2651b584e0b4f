"""Enrollment: register this device with a setup key and store what the server returns.

The key pair is generated here; only the public key is sent. Nothing is written unless
the server accepted the enrollment.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from wiremesh import __version__
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.state import (
    STATE_FILE,
    EnrolledDevice,
    EnrolledNetwork,
    Enrollment,
    NotEnrolled,
    StateError,
    check_writable,
    load_enrollment,
    save_enrollment,
)

__all__ = [
    "ENROLL_PATH",
    "WEBSOCKET_PATH",
    "EnrollError",
    "enroll",
    "normalize_server_url",
    "websocket_url",
]

logger = logging.getLogger("wiremesh.agent")

ENROLL_PATH: Final = "/api/v1/enroll"
WEBSOCKET_PATH: Final = "/api/v1/agent/ws"
REQUEST_TIMEOUT: Final = 15.0


class EnrollError(Exception):
    """Enrollment failed; the message is meant for the person at the console."""


def normalize_server_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; raises EnrollError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnrollError(
            f"the server URL must look like https://wiremesh.example.com, not {url!r}"
        )
    if parts.query or parts.fragment:
        raise EnrollError("the server URL must not have a query or fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def websocket_url(server_url: str) -> str:
    """The agent WebSocket URL under ``server_url`` (ws:// for http, wss:// for https)."""
    parts = urlsplit(server_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + WEBSOCKET_PATH, "", ""))


def _server_error(response: httpx.Response) -> str:
    """The server's ``{"error": {"code", "message"}}`` as one line, or what we got instead."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"{error['message']} ({error.get('code', 'error')})"
    return f"unexpected HTTP {response.status_code} response; is this a wiremesh server?"


async def enroll(
    state_dir: Path,
    server_url: str,
    setup_key: str,
    hostname: str,
    *,
    force: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Enrollment:
    """Enroll this device and store the result in ``state_dir``.

    Refuses when ``state_dir`` already holds an enrollment, unless ``force``: the old
    device then stays registered on the server until an administrator removes it.
    """
    server_url = normalize_server_url(server_url)
    if not force:
        try:
            existing = load_enrollment(state_dir)
        except NotEnrolled:
            pass
        except StateError as exc:
            raise EnrollError(str(exc)) from None
        else:
            raise EnrollError(
                f"this device is already enrolled as {existing.device.hostname} "
                f"({existing.device.virtual_ip}) with {existing.server_url} "
                f"(state in {state_dir / STATE_FILE}); use --force to enroll again"
            )
    try:
        check_writable(state_dir)
    except StateError as exc:
        raise EnrollError(str(exc)) from None
    keys = generate_keypair()
    url = server_url + ENROLL_PATH
    try:
        async with httpx.AsyncClient(
            transport=transport,
            timeout=REQUEST_TIMEOUT,
            headers={"User-Agent": f"wiremesh-agent/{__version__}"},
        ) as client:
            response = await client.post(
                url,
                json={"setup_key": setup_key, "hostname": hostname, "public_key": keys.public_key},
            )
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise EnrollError(f"cannot reach the server at {server_url}: {reason}") from None
    if response.status_code != 201:
        raise EnrollError(f"the server refused the enrollment: {_server_error(response)}")
    try:
        body = response.json()
        enrollment = Enrollment(
            server_url=server_url,
            credential=body["credential"],
            device=EnrolledDevice.model_validate(body["device"]),
            network=EnrolledNetwork.model_validate(body["network"]),
            enrolled_at=datetime.now(UTC),
        )
    except (ValueError, KeyError, TypeError, ValidationError):
        raise EnrollError(
            "the server accepted the enrollment but its answer is not understood; "
            "are the agent and server versions compatible?"
        ) from None
    if enrollment.device.public_key != keys.public_key:
        raise EnrollError("the server registered another public key than the one sent")
    try:
        save_enrollment(state_dir, enrollment, keys.private_key)
    except StateError as exc:
        raise EnrollError(
            f"{exc}; the server has registered the device ({enrollment.device.peer_id}), "
            "so enrolling again creates a second one"
        ) from None
    logger.info(
        "enrolled as %s: virtual IP %s in %s (%s)",
        enrollment.device.hostname,
        enrollment.device.virtual_ip,
        enrollment.network.network,
        enrollment.network.org_name,
    )
    return enrollment
