"""Enrollment: register this device with a setup key and store what the server returns.

The key pair is generated here; only the public key is sent. Nothing is written unless
a server accepted the enrollment. With several server URLs (replicas of one deployment)
each is asked in turn until one answers; see :func:`wiremesh.agent.api.first_answer`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import ValidationError

from wiremesh.agent.api import NoServerAnswered, first_answer, server_error
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
from wiremesh.protocol.urls import ENROLL_PATH

__all__ = ["EnrollError", "enroll"]

logger = logging.getLogger("wiremesh.agent")


class EnrollError(Exception):
    """Enrollment failed; the message is meant for the person at the console."""


async def enroll(
    state_dir: Path,
    server_urls: Sequence[str],
    setup_key: str,
    hostname: str,
    *,
    force: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    tls: ssl.SSLContext | None = None,
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
            tls=tls,
        )
    except NoServerAnswered as exc:
        raise EnrollError(str(exc)) from None
    if response.status_code != 201:
        raise EnrollError(f"the server refused the enrollment: {server_error(response)}")
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
