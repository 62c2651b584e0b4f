"""The relay verifies the server's certificate like the agent: a private CA it is given is
trusted, a server it cannot verify gets no check-in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.protocol.helpers import wg_key
from tests.support.certificates import CertificateAuthority
from tests.support.deployment import StartDeployment
from tests.support.waiting import eventually
from wiremesh.agent.backend import PeerChange, PeerState
from wiremesh.agent.tls import tls_context
from wiremesh.protocol import Relay
from wiremesh.relay.runner import RelayRunner

RELAY_TOKEN = "relay-token-for-tls-test"


class RecordingInterface:
    """No WireGuard: what the runner would configure, kept for the test."""

    def __init__(self) -> None:
        self.networks: list[str] = []

    async def peers(self) -> dict[str, PeerState]:
        return {}

    async def set_org_networks(self, networks: Iterable[str]) -> None:
        self.networks = list(networks)

    async def apply(self, changes: list[PeerChange]) -> None:
        pass


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_relay_checks_in_over_tls_only_with_a_ca_it_trusts(
    start_deployment: StartDeployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    authority = CertificateAuthority.create(tmp_path / "ca")
    certificate = authority.issue(tmp_path / "cert")
    deployment = await start_deployment(
        env={
            "WIREMESH_TLS_CERT": str(certificate.cert_path),
            "WIREMESH_TLS_KEY": str(certificate.key_path),
            "WIREMESH_RELAY_TOKEN": RELAY_TOKEN,
        },
        ca_file=authority.cert_path,
    )
    identity = Relay(name="r1", public_key=wg_key(1), endpoint="198.18.0.30:3478")

    async def run(trust: CertificateAuthority) -> RecordingInterface:
        interface = RecordingInterface()
        runner = RelayRunner(
            deployment.server.url,
            RELAY_TOKEN,
            identity,
            interface,  # type: ignore[arg-type]
            tls=tls_context(trust.cert_path),
        )
        task = asyncio.create_task(runner.run())
        try:

            async def checked_in_or_refused() -> bool:
                return bool(interface.networks) or "CERTIFICATE_VERIFY_FAILED" in caplog.text

            await eventually(checked_in_or_refused, 20, "the relay's first check-in")
        finally:
            runner.stop()
            await task
        return interface

    caplog.set_level(logging.WARNING, logger="wiremesh.relay")
    trusted = await run(authority)
    assert trusted.networks == ["100.64.0.0/24"]
    assert "CERTIFICATE_VERIFY_FAILED" not in caplog.text

    stranger = await run(CertificateAuthority.create(tmp_path / "other", "another CA"))
    assert stranger.networks == []
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
