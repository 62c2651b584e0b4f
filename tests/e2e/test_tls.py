"""The server serving TLS itself, and the agent verifying it: a certificate from a test CA,
a real ``wiremesh server`` process, enrollment over https:// and the session over wss:// by
the real agent, refused when the agent does not trust the CA."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.certificates import CertificateAuthority
from tests.support.deployment import Deployment, StartDeployment
from tests.support.processes import AGENT_ONLY, AgentProcess, clean_environ
from tests.support.waiting import eventually
from wiremesh.agent.enroll import EnrollError, enroll
from wiremesh.agent.tls import CA_FILE_ENV, tls_context

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])
"""TLS sits in front of everything; the database does not matter to it."""


@pytest.fixture
def test_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


async def _tls_deployment(
    start_deployment: StartDeployment, test_ca: CertificateAuthority, tmp_path: Path
) -> Deployment:
    certificate = test_ca.issue(tmp_path / "server-cert")
    return await start_deployment(
        env={
            "WIREMESH_TLS_CERT": str(certificate.cert_path),
            "WIREMESH_TLS_KEY": str(certificate.key_path),
        },
        ca_file=test_ca.cert_path,
    )


@sqlite_only
async def test_the_agent_enrolls_over_https_and_connects_over_wss(
    start_deployment: StartDeployment, test_ca: CertificateAuthority, tmp_path: Path
) -> None:
    deployment = await _tls_deployment(start_deployment, test_ca, tmp_path)
    server = deployment.server
    assert server.url.startswith("https://")

    async with httpx.AsyncClient(verify=server.verify) as client:
        response = await client.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == "max-age=31536000"

    # `wiremesh agent enroll --ca-file` over https://, then `agent up` over wss://.
    state_dir = deployment.state_dir("secure")
    process = await asyncio.create_subprocess_exec(
        *AGENT_ONLY, "enroll", "--server", server.url, "--state-dir", str(state_dir),
        "--hostname", "secure", "--ca-file", str(test_ca.cert_path),
        env={**clean_environ(), "WIREMESH_SETUP_KEY": deployment.setup_key},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()

    agent = AgentProcess(
        deployment.group,
        "secure",
        state_dir,
        {**clean_environ(), CA_FILE_ENV: str(test_ca.cert_path)},
    )
    agent.start()
    [row] = await deployment.heartbeating(1)
    assert row.public_ip == "127.0.0.1"
    assert f"connection {row.connection_id}" in agent.log()
    assert server.ws_url.startswith("wss://")


@sqlite_only
async def test_an_untrusted_certificate_is_refused(
    start_deployment: StartDeployment, test_ca: CertificateAuthority, tmp_path: Path
) -> None:
    deployment = await _tls_deployment(start_deployment, test_ca, tmp_path)
    url = deployment.server.url
    other_ca = CertificateAuthority.create(tmp_path / "other-ca", "another CA")

    # The system's CAs do not know the test CA; another private CA does not sign it.
    for trust in (tls_context(), tls_context(other_ca.cert_path)):
        with pytest.raises(EnrollError, match="CERTIFICATE_VERIFY_FAILED"):
            await enroll(tmp_path / "refused", [url], deployment.setup_key, "refused", tls=trust)
    assert await deployment.rows() == []

    # An enrolled agent told to trust another CA never opens a session.
    enrolled = await enroll(
        deployment.state_dir("wary"),
        [url],
        deployment.setup_key,
        "wary",
        tls=tls_context(test_ca.cert_path),
    )
    agent = AgentProcess(
        deployment.group,
        "wary",
        deployment.state_dir("wary"),
        {**clean_environ(), CA_FILE_ENV: str(other_ca.cert_path)},
    )
    agent.start()

    async def refused() -> bool:
        return "CERTIFICATE_VERIFY_FAILED" in agent.log()

    await eventually(refused, 20, "the agent refuses the server's certificate")
    assert await deployment.rows(enrolled.device.peer_id) == []


async def test_an_unreadable_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    process = await asyncio.create_subprocess_exec(
        *AGENT_ONLY, "enroll", "--server", "https://127.0.0.1:9", "--state-dir",
        str(tmp_path / "state"), "--ca-file", str(bad),
        env={**clean_environ(), "WIREMESH_SETUP_KEY": "wmk_x"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 1
    assert f"cannot use the CA file {bad}" in output.decode()
