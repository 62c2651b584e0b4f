"""``/metrics`` of a real server process, parsed with Prometheus' own text parser and
checked against what the test did: agents over real WebSockets connecting, one closing,
one timing out, one refused; an invitation mail through a real SMTP server."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from tests.factories import auth
from tests.server.devices.agents import open_session
from tests.server.mail.smtp_servers import make_certificate, start_server
from tests.support.deployment import Deployment, StartDeployment
from tests.support.ports import free_port
from tests.support.processes import HEARTBEAT_TIMEOUT
from tests.support.waiting import eventually

DASHBOARD = Path(__file__).parents[3] / "docs" / "grafana-dashboard.json"
METRICS_TOKEN = "metrics-token-5d1c7a"

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``; fails if none has."""
    matching = [v for n, ls, v in samples if n == name and labels.items() <= ls.items()]
    assert matching, f"no sample {name} {labels}"
    return sum(matching)


async def scrape(url: str, token: str | None = METRICS_TOKEN) -> httpx.Response:
    headers = auth(token) if token is not None else {}
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{url}/metrics", headers=headers)


async def _metrics(deployment: Deployment) -> Samples:
    response = await scrape(deployment.server.url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def _admission_limit(env: Mapping[str, str]) -> int:
    return max(1, int(env.get("WIREMESH_DATABASE_POOL_SIZE", "20")) // 2)


async def test_metrics_count_what_happened(
    start_deployment: StartDeployment, tmp_path: Path
) -> None:
    (tmp_path / "smtp").mkdir()
    certificate = make_certificate(tmp_path / "smtp")
    smtp = start_server(certificate, username="mailer", password="pw-for-metrics")
    try:
        deployment = await start_deployment(
            env={"WIREMESH_METRICS_TOKEN": METRICS_TOKEN, "WIREMESH_MAIL_POLL_INTERVAL": "0.2"}
        )
        # Scraping needs the token.
        for token, code in ((None, "metrics_token_required"), ("wrong", "invalid_metrics_token")):
            refused = await scrape(deployment.server.url, token)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == code

        staying, leaving, silent_device = [
            await deployment.enroll_raw(name) for name in ("staying", "leaving", "silent")
        ]
        await deployment.connect_live(staying)
        leaver = await deployment.connect_live(leaving)
        await leaver.close()
        silent, _welcome = await open_session(deployment.server.ws_url, silent_device["credential"])
        with pytest.raises(ConnectionClosed):
            await open_session(deployment.server.ws_url, "wmd_0123456789ab_" + "x" * 43)

        async def silent_timed_out() -> bool:
            rows = await deployment.rows(silent_device["device"]["peer_id"])
            return rows[-1].status == "timeout"

        await eventually(silent_timed_out, HEARTBEAT_TIMEOUT * 5, "the silent agent times out")
        await silent.close()

        await _invite_through(deployment, smtp.host, smtp.port, certificate.pem)

        async def mail_counted() -> Samples | None:
            samples = await _metrics(deployment)
            delivered = [
                v for n, ls, v in samples
                if n == "wiremesh_mails_total" and ls.get("outcome") == "delivered"
            ]  # fmt: skip
            return samples if delivered == [1.0] else None

        samples = await eventually(mail_counted, 20, "the delivered invitation is counted")
    finally:
        smtp.stop()

    server_id = await deployment.server_id(deployment.server)
    assert {ls["server_id"] for _n, ls, _v in samples if "server_id" in ls} == {server_id}
    assert all("server_id" in ls for n, ls, _v in samples if n.startswith("wiremesh_"))

    assert value(samples, "wiremesh_sessions_live") == 1
    assert value(samples, "wiremesh_org_sessions_live", org_id=str(deployment.org_id)) == 1
    assert value(samples, "wiremesh_session_connects_total") == 3
    ends = {
        (ls["status"], ls["reason"]): v
        for n, ls, v in samples
        if n == "wiremesh_session_ends_total"
    }
    assert ends == {("disconnected", "client_closed"): 1, ("timeout", "heartbeat_timeout"): 1}
    assert value(samples, "wiremesh_session_refusals_total", reason="auth_failed") == 1

    flushes = value(samples, "wiremesh_heartbeat_flush_sessions_count")
    assert flushes >= 1
    assert value(samples, "wiremesh_heartbeat_flush_seconds_count") == flushes
    assert value(samples, "wiremesh_heartbeat_flush_sessions_sum") >= flushes
    # "staying" saw "leaving" and "silent" join and leave: deltas went out to it.
    assert value(samples, "wiremesh_peer_delta_fanout_seconds_count") >= 2

    assert value(samples, "wiremesh_admission_waiting") == 0
    assert value(samples, "wiremesh_admission_in_progress") == 0
    assert value(samples, "wiremesh_admission_limit") == _admission_limit(deployment.server.env)
    lag = {ls["quantile"] for n, ls, _v in samples if n == "wiremesh_event_loop_lag_seconds"}
    assert lag == {"0.5", "0.99", "1.0"}
    assert value(samples, "wiremesh_db_pool_checked_out") >= 0
    assert value(samples, "wiremesh_db_pool_size") >= 1

    assert value(samples, "wiremesh_mail_outbox_depth") == 0
    assert value(samples, "wiremesh_mail_outbox_oldest_age_seconds") == 0
    assert (
        value(samples, "wiremesh_worker_runs_total", worker="connection-cleanup", outcome="ok") >= 1
    )
    assert value(samples, "wiremesh_worker_runs_total", worker="mail-outbox", outcome="ok") >= 1

    # Every series the Grafana dashboard queries is one the server exposes.
    exposed = {name for name, _labels, _value in samples}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"wiremesh_[a-z_]+", target["expr"])
    }
    assert queried
    assert queried <= exposed, queried - exposed


async def _invite_through(deployment: Deployment, host: str, port: int, ca_pem: str) -> None:
    response = await deployment.api(
        "PUT",
        "/smtp/global",
        json={
            "smtp_server": host,
            "smtp_port": port,
            "smtp_username": "mailer",
            "smtp_password": "pw-for-metrics",
            "from_email": "wiremesh@example.com",
            "ca_certificate": ca_pem,
        },
    )
    assert response.status_code == 200, response.text
    response = await deployment.api(
        "POST", f"/orgs/{deployment.org_id}/invitations", json={"email": "new@example.com"}
    )
    assert response.status_code == 201, response.text


async def test_metrics_on_a_separate_listener(start_deployment: StartDeployment) -> None:
    port = free_port()
    deployment = await start_deployment(env={"WIREMESH_METRICS_LISTEN": f"127.0.0.1:{port}"})
    listener = f"http://127.0.0.1:{port}"
    await deployment.connect_live(await deployment.enroll_raw("one"))

    response = await scrape(listener, None)
    assert response.status_code == 200, response.text
    samples = parse(response.text)
    assert value(samples, "wiremesh_sessions_live") == 1
    assert value(samples, "wiremesh_session_connects_total") == 1
    # Without a token the API port serves no metrics; the listener serves nothing else.
    not_served = await scrape(deployment.server.url, None)
    assert not_served.status_code == 404
    assert not_served.json()["error"]["code"] == "not_found"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{listener}/api/v1/users/me")).status_code == 404
        assert (await client.post(f"{listener}/metrics")).status_code == 405


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_each_replica_counts_its_own_under_its_server_id(
    start_deployment: StartDeployment,
) -> None:
    deployment = await start_deployment(2, env={"WIREMESH_METRICS_TOKEN": METRICS_TOKEN})
    first, second = deployment.replicas
    await deployment.connect_live(await deployment.enroll_raw("on-first"), via=first)
    for name in ("on-second-a", "on-second-b"):
        await deployment.connect_live(await deployment.enroll_raw(name), via=second)

    for replica, sessions in ((first, 1), (second, 2)):
        response = await scrape(replica.url)
        assert response.status_code == 200, response.text
        samples = parse(response.text)
        server_id = await deployment.server_id(replica)
        assert {ls["server_id"] for _n, ls, _v in samples if "server_id" in ls} == {server_id}
        assert value(samples, "wiremesh_sessions_live") == sessions
        assert value(samples, "wiremesh_session_connects_total") == sessions
