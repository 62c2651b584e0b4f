"""Key rotation: a new key pair for this device, the public half registered with the server.

Order, so that no step can leave a device the server does not know:

1. make a new key pair here (the private key never leaves the machine);
2. ``PUT /api/v1/agent/public-key`` with the device credential, to the first of the
   device's servers that answers (an unreachable or failing replica is skipped, a
   refusal is final); the server stores the key and sends every peer a ``peers_delta``
   with it. If this fails, nothing changed;
3. store the new private key, then the state file with the new public key (each
   atomically, mode 0600), under the state lock and onto the state as it is then, so a
   ``servers set`` made meanwhile is kept.

A running agent notices the new key file within a tenth of a second, re-keys its
interface and starts a handshake with every peer
(:class:`wiremesh.agent.wireguard.keywatch.KeyFollower`): peers already told the new key
reach it again at once, the others when their delta comes. If the command is interrupted
between 2 and 3, the server has a key whose private half is lost: run it again, it only
needs the credential and makes (and sends) another pair.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from wiremesh.agent.api import NoServerAnswered, first_answer, server_error
from wiremesh.agent.keys import generate_keypair
from wiremesh.agent.state import (
    Enrollment,
    StateError,
    load_enrollment,
    save_enrollment,
    state_lock,
)
from wiremesh.protocol.urls import PUBLIC_KEY_PATH

__all__ = ["RotateError", "rotate_key"]

logger = logging.getLogger("wiremesh.agent")


class RotateError(Exception):
    """The rotation failed; the message says whether anything changed and what to do."""


async def rotate_key(
    state_dir: Path, *, transport: httpx.AsyncBaseTransport | None = None
) -> Enrollment:
    """Rotate this device's key pair (see the module doc); the updated enrollment."""
    try:
        enrollment = load_enrollment(state_dir)
    except StateError as exc:
        raise RotateError(str(exc)) from None
    keys = generate_keypair()
    try:
        answered_by, response = await first_answer(
            enrollment.server_urls,
            lambda client, server_url: client.put(
                server_url + PUBLIC_KEY_PATH,
                json={"public_key": keys.public_key},
                headers={"Authorization": f"Bearer {enrollment.credential}"},
            ),
            transport=transport,
        )
    except NoServerAnswered as exc:
        raise RotateError(f"{exc}; nothing changed") from None
    if response.status_code != 200:
        raise RotateError(
            f"the server refused the new key: {server_error(response)}; nothing changed"
        )
    try:
        registered = response.json().get("public_key")
    except (ValueError, AttributeError):
        registered = None
    if registered != keys.public_key:
        raise RotateError(
            "the server answered without the new public key; run `wiremesh agent rotate-key` again"
        )
    try:
        with state_lock(state_dir):
            current = load_enrollment(state_dir)
            if current.credential != enrollment.credential:
                raise RotateError(
                    "this machine was enrolled again while the key was rotated: the new key "
                    "went to the device of the old enrollment; the new enrollment is unchanged"
                )
            device = current.device.model_copy(update={"public_key": keys.public_key})
            updated = current.model_copy(update={"device": device})
            save_enrollment(state_dir, updated, keys.private_key)
    except StateError as exc:
        raise RotateError(
            f"{exc}; the server already has the new public key, so this device cannot connect "
            "to its peers until you run `wiremesh agent rotate-key` again"
        ) from None
    logger.info("rotated the key pair at %s: public key %s", answered_by, keys.public_key)
    return updated
