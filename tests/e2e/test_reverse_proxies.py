"""The reverse-proxy configurations of docs/deployment.md, run as they are written with the
real Caddy and nginx in front of a real server: TLS from a test CA, an agent's WebSocket
session through the proxy, and the client's address the server records (from the proxy's
``X-Forwarded-For``; never from one the client sent itself).

The configuration blocks are read from the document, so the documented text is what runs;
only the host name, the ports and the certificate paths are replaced.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.server.devices.agents import LiveAgent
from tests.support.certificates import CertificateAuthority, ServerCertificate
from tests.support.deployment import Deployment, StartDeployment
from tests.support.ports import free_port
from tests.support.processes import Process
from tests.support.waiting import eventually
from wiremesh.protocol import CloseCode

DOC = Path(__file__).parents[2] / "docs" / "deployment.md"
DOC_HOST = "wiremesh.example.com"
DOC_UPSTREAM = "127.0.0.1:8080"
DOC_CERT = "/etc/ssl/wiremesh/fullchain.pem"
DOC_KEY = "/etc/ssl/wiremesh/privkey.pem"

CLIENT_ADDRESS = "127.0.0.2"
"""The agent connects from here; the proxy from 127.0.0.1, the only trusted proxy."""
FORGED_ADDRESS = "203.0.113.9"

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def documented(language: str) -> str:
    """The first ```<language> block of docs/deployment.md."""
    match = re.search(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"docs/deployment.md has no {language} block"
    return match.group(1)


def find_binary(name: str) -> str:
    """The proxy's binary. Missing: a failure in CI (``.ci/run`` installs it), else a skip."""
    binary = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if binary is not None:
        return binary
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed, although .ci/run installs it")
    pytest.skip(f"{name} is not installed (apt-get install {name})")


def _with_test_paths(config: str, certificate: ServerCertificate, upstream: str) -> str:
    for documented_text, actual in (
        (DOC_CERT, str(certificate.cert_path)),
        (DOC_KEY, str(certificate.key_path)),
        (DOC_UPSTREAM, upstream),
    ):
        assert documented_text in config, documented_text
        config = config.replace(documented_text, actual)
    return config


def caddy(
    deployment: Deployment, certificate: ServerCertificate, port: int, directory: Path
) -> Process:
    binary = find_binary("caddy")
    site = _with_test_paths(
        documented("caddyfile"), certificate, f"127.0.0.1:{deployment.server.port}"
    )
    assert site.startswith(DOC_HOST)
    site = f"127.0.0.1:{port}" + site.removeprefix(DOC_HOST)
    # The global options are the test's own: no admin endpoint, no port-80 redirect, state
    # in the test's directory.
    config = (
        "{\n\tadmin off\n\tauto_https disable_redirects\n"
        f"\tstorage file_system {directory / 'storage'}\n}}\n\n{site}"
    )
    path = directory / "Caddyfile"
    path.write_text(config, encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),
        "XDG_DATA_HOME": str(directory / "data"),
        "XDG_CONFIG_HOME": str(directory / "config"),
    }
    return deployment.group.add(
        "caddy", [binary, "run", "--config", str(path), "--adapter", "caddyfile"], env
    )


def nginx(
    deployment: Deployment, certificate: ServerCertificate, port: int, directory: Path
) -> Process:
    binary = find_binary("nginx")
    site = _with_test_paths(documented("nginx"), certificate, f"127.0.0.1:{deployment.server.port}")
    assert "listen 443 ssl;" in site
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    (directory / "wiremesh.conf").write_text(site, encoding="utf-8")
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    # The main configuration is the test's own, as Debian's nginx.conf is the package's.
    main = f"""
daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log stderr notice;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {directory / "wiremesh.conf"};
}}
"""
    path = directory / "nginx.conf"
    path.write_text(main, encoding="utf-8")
    argv = [binary, "-p", str(directory), "-c", str(path), "-e", "stderr"]
    return deployment.group.add("nginx", argv, {"PATH": os.environ.get("PATH", "")})


PROXIES: dict[str, Callable[[Deployment, ServerCertificate, int, Path], Process]] = {
    "caddy": caddy,
    "nginx": nginx,
}


@pytest.mark.parametrize("proxy_name", sorted(PROXIES))
async def test_an_agent_session_through_the_documented_proxy(
    proxy_name: str, start_deployment: StartDeployment, tmp_path: Path
) -> None:
    deployment = await start_deployment(env={"WIREMESH_TRUSTED_PROXIES": '["127.0.0.1/32"]'})
    authority = CertificateAuthority.create(tmp_path / "ca")
    certificate = authority.issue(tmp_path / "proxy-cert")
    directory = tmp_path / proxy_name
    directory.mkdir()
    port = free_port()
    proxy = PROXIES[proxy_name](deployment, certificate, port, directory)
    proxy.start()
    url = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(authority.cert_path))

    async def ready() -> httpx.Response | None:
        if not proxy.running():
            raise AssertionError(f"{proxy_name} exited:\n{proxy.log()}")
        try:
            async with httpx.AsyncClient(verify=trust, timeout=2) as client:
                response = await client.get(f"{url}/readyz")
        except httpx.TransportError:
            return None
        return response if response.status_code == 200 else None

    answer = await eventually(ready, 20, f"{proxy_name} passes /readyz through")
    assert answer.headers["strict-transport-security"] == "max-age=31536000"

    async with httpx.AsyncClient(verify=trust, timeout=10) as client:
        response = await client.post(
            f"{url}/api/v1/enroll", json={"setup_key": deployment.setup_key, "hostname": "far"}
        )
    assert response.status_code == 201, response.text
    enrolled = response.json()

    agent = await LiveAgent.connect(
        f"wss://127.0.0.1:{port}/api/v1/agent/ws",
        enrolled["credential"],
        source_address=CLIENT_ADDRESS,
        tls=trust,
        headers={"X-Forwarded-For": FORGED_ADDRESS},
    )
    try:
        assert agent.welcome["public_ip"] == CLIENT_ADDRESS
        # Pings and pongs pass both ways through the proxy.
        [row] = await deployment.heartbeating(1)
        assert row.public_ip == CLIENT_ADDRESS
    finally:
        await agent.close()
    ended = await deployment.ended(row.id, 10)
    assert (ended.status, ended.close_code) == ("disconnected", CloseCode.NORMAL)
