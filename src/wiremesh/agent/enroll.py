"""Enrollment: register this device with a setup key and store what the server returns.

The key pair is generated here; only the public key is sent. Nothing is written unless
a server accepted the enrollment. With several server URLs (replicas of one deployment)
each is asked in turn until one answers; see :func:`first_answer`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from wiremesh import __version__
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.servers import InvalidServerURL, normalize_server_urls
from wiremesh.agent.state import (
    STATE_FILE,
    EnrolledDevice,
    EnrolledNetwork,
    Enrollment,
    NotEnrolled,
    StateError,
    check_writable,
    draw_listen_port,
    load_enrollment,
    save_enrollment,
)

__all__ = [
    "ENROLL_PATH",
    "WEBSOCKET_PATH",
    "EnrollError",
    "NoServerAnswered",
    "enroll",
    "first_answer",
    "websocket_url",
]

logger = logging.getLogger("wiremesh.agent")

ENROLL_PATH: Final = "/api/v1/enroll"
WEBSOCKET_PATH: Final = "/api/v1/agent/ws"
REQUEST_TIMEOUT: Final = 15.0


class EnrollError(Exception):
    """Enrollment failed; the message is meant for the person at the console."""


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


class NoServerAnswered(Exception):
    """No server answered: each was unreachable or failed (5xx); one line per server."""

    def __init__(self, failures: Sequence[str]) -> None:
        super().__init__(*failures)
        self.failures = tuple(failures)

    def __str__(self) -> str:
        if len(self.failures) == 1:
            return self.failures[0]
        return "no server answered: " + "; ".join(self.failures)


async def first_answer(
    server_urls: Sequence[str],
    send: Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[str, httpx.Response]:
    """``send(client, server_url)`` to each server in order; who answered first, and how.

    An unreachable server (connection refused, TLS error, timeout) or one that failed
    (5xx: a replica going down, a load balancer without a backend) is skipped. Any other
    response is the deployment's answer, a refusal included: every replica shares one
    database, so asking the next one would only repeat it. Raises
    :class:`NoServerAnswered` when every server was skipped.
    """
    failures: list[str] = []
    async with httpx.AsyncClient(
        transport=transport,
        timeout=REQUEST_TIMEOUT,
        headers={"User-Agent": f"wiremesh-agent/{__version__}"},
    ) as client:
        for number, server_url in enumerate(server_urls):
            try:
                response = await send(client, server_url)
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
                failures.append(f"cannot reach the server at {server_url}: {reason}")
            else:
                if response.status_code < 500:
                    return server_url, response
                failures.append(
                    f"the server at {server_url} failed with HTTP {response.status_code}"
                )
            if number + 1 < len(server_urls):
                logger.warning("%s; trying %s", failures[-1], server_urls[number + 1])
    raise NoServerAnswered(failures)


async def enroll(
    state_dir: Path,
    server_urls: Sequence[str],
    setup_key: str,
    hostname: str,
    *,
    force: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Enrollment:
    """Enroll this device with the first of ``server_urls`` that answers; store all of them.

    Refuses when ``state_dir`` already holds an enrollment, unless ``force``: the old
    device then stays registered on the server until an administrator removes it.
    """
    try:
        urls = normalize_server_urls(server_urls)
    except InvalidServerURL as exc:
        raise EnrollError(str(exc)) from None
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
                f"({existing.device.virtual_ip}) with {', '.join(existing.server_urls)} "
                f"(state in {state_dir / STATE_FILE}); use --force to enroll again"
            )
    try:
        check_writable(state_dir)
    except StateError as exc:
        raise EnrollError(str(exc)) from None
    keys = generate_keypair()
    request = {"setup_key": setup_key, "hostname": hostname, "public_key": keys.public_key}
    try:
        answered_by, response = await first_answer(
            urls,
            lambda client, server_url: client.post(server_url + ENROLL_PATH, json=request),
            transport=transport,
        )
    except NoServerAnswered as exc:
        raise EnrollError(str(exc)) from None
    if response.status_code != 201:
        raise EnrollError(f"the server refused the enrollment: {_server_error(response)}")
    try:
        body = response.json()
        enrollment = Enrollment(
            server_urls=urls,
            credential=body["credential"],
            device=EnrolledDevice.model_validate(body["device"]),
            network=EnrolledNetwork.model_validate(body["network"]),
            enrolled_at=datetime.now(UTC),
            listen_port=draw_listen_port(),
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
        "enrolled as %s at %s: virtual IP %s in %s (%s)",
        enrollment.device.hostname,
        answered_by,
        enrollment.device.virtual_ip,
        enrollment.network.network,
        enrollment.network.org_name,
    )
    return enrollment
