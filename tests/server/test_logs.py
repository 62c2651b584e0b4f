"""Server logging: one format for every wiremesh and uvicorn logger, JSON for shippers, and
no secret in any line, checked on a real server process taken through a day's events."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.factories import auth
from tests.server.devices.agents import open_session
from tests.server.mail.smtp_servers import SmtpServer, make_certificate, start_server
from tests.support.deployment import Deployment, StartDeployment
from tests.support.processes import HEARTBEAT_TIMEOUT, WIREMESH, clean_environ
from tests.support.waiting import eventually
from wiremesh.protocol import CloseCode
from wiremesh.server import logs

INVITATION_TOKEN = re.compile(r"wminv_[0-9a-f]{12}_[A-Za-z0-9_-]+")
SMTP_PASSWORD = "smtp-pass-7f3e1b9c0d"
STDOUT_LINES = ("wiremesh server listening on", "public URL:")
"""What ``wiremesh server`` prints on stdout (the same file as its log in these tests)."""


# ------------------------------------------------------------------ the set-up itself


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """dictConfig changes process-wide loggers: put back what pytest had."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    named = {
        name: (logging.getLogger(name).level, logging.getLogger(name).propagate)
        for name in ("wiremesh", "uvicorn", "uvicorn.error", "uvicorn.access", "alembic")
    }
    yield
    root.handlers[:], root.level = saved
    for name, (level, propagate) in named.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).propagate = propagate


def _record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("wiremesh.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_time_level_logger_message_and_extra_fields() -> None:
    line = logs.JsonFormatter().format(_record("device %s ended", "p1", peer_id="p1", org_id=3))
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "wiremesh.test"
    assert entry["message"] == "device p1 ended"
    assert (entry["peer_id"], entry["org_id"]) == ("p1", 3)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    assert "\n" not in line


def test_credential_shaped_words_are_redacted_in_messages_and_tracebacks() -> None:
    token = "wm_0123456789ab_" + "x" * 43
    setup_key = "wmk_0123456789ab_" + "y" * 43
    record = _record("got %s and %s", token, setup_key)
    try:
        raise ValueError(f"bad {token}")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert logs.RedactSecrets().filter(record)
    text = logs.JsonFormatter().format(record)
    assert token not in text
    assert setup_key not in text
    assert "wm_[redacted]" in text
    assert "wmk_[redacted]" in text
    # extra fields too
    extra = logs.JsonFormatter().format(_record("x", peer_id="p", note=f"saw {token}"))
    assert json.loads(extra)["note"] == "saw wm_[redacted]"
    # words that only start like one are left alone
    assert logs.redact("wm_short and wmx_") == "wm_short and wmx_"


def test_levels_and_formats_are_checked() -> None:
    with pytest.raises(ValueError, match="log level"):
        logs.logging_config("loud", "text")
    with pytest.raises(ValueError, match="log format"):
        logs.logging_config("info", "xml")


@pytest.mark.usefixtures("restore_logging")
def test_every_wiremesh_and_uvicorn_logger_follows_the_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging("warning", "json")
    logging.getLogger("wiremesh.presence").info("hidden at warning")
    logging.getLogger("wiremesh.presence").warning("shown at warning")
    logging.getLogger("uvicorn.error").warning("uvicorn too")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["shown at warning", "uvicorn too"]

    logs.configure_logging("debug", "text")
    logging.getLogger("wiremesh.anything").debug("now shown")
    [line] = capsys.readouterr().err.splitlines()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} DEBUG +wiremesh\.anything: now", line)


# ------------------------------------------------------------------ a real server's log


def _entries(text: str) -> list[dict[str, Any]]:
    """Every log line as JSON (each must be); the lines ``wiremesh server`` prints skipped."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(STDOUT_LINES):
            continue
        entries.append(json.loads(line))
    return entries


def _with(entries: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    return [e for e in entries if all(e.get(k) == v for k, v in fields.items())]


async def _server_log(deployment: Deployment) -> list[dict[str, Any]]:
    return _entries(deployment.server.process.log())


async def test_a_real_servers_log_tells_the_story_and_holds_no_secret(
    start_deployment: StartDeployment, tmp_path: Path
) -> None:
    (tmp_path / "smtp-cert").mkdir()
    certificate = make_certificate(tmp_path / "smtp-cert")
    smtp = start_server(certificate, username="mailer", password=SMTP_PASSWORD)
    try:
        deployment = await start_deployment(
            env={
                "WIREMESH_LOG_FORMAT": "json",
                "WIREMESH_LOG_LEVEL": "debug",
                "WIREMESH_MAIL_POLL_INTERVAL": "0.2",
            }
        )
        secrets, peer_id = await _day_of_events(deployment, smtp, certificate.pem)
    finally:
        smtp.stop()

    entries = await _server_log(deployment)
    server = deployment.server
    text = server.process.log()
    for name, secret in secrets.items():
        assert secret not in text, f"the {name} is in the server's log"
    # Nothing even reached the redaction filter: no code path tried to log a credential.
    assert logs.REDACTED not in text
    key_file = tmp_path / "secret.key"
    keys = [line for line in key_file.read_text().splitlines() if not line.startswith("#")]
    assert keys
    for key in keys:
        assert key not in text, "a secret key is in the server's log"

    assert {e["level"] for e in entries} >= {"debug", "info", "warning"}
    assert all(e["time"].endswith("+00:00") for e in entries)
    # uvicorn's own lines come in the same format
    assert any(e["logger"].startswith("uvicorn") for e in entries)

    credential_peer = peer_id
    opened = _with(entries, event="session_opened", peer_id=credential_peer)
    assert opened, "no session start logged"
    assert opened[0]["org_id"] == deployment.org_id
    assert opened[0]["public_ip"] == "127.0.0.1"
    ended = _with(entries, event="session_ended", peer_id=credential_peer)
    reasons = {(e["status"], e["reason"], e["close_code"]) for e in ended}
    assert ("disconnected", "superseded", CloseCode.SUPERSEDED) in reasons
    assert ("disconnected", "client_closed", CloseCode.NORMAL) in reasons
    assert ("timeout", "heartbeat_timeout", CloseCode.HEARTBEAT_TIMEOUT) in reasons
    assert ("disconnected", "server_shutdown", CloseCode.GOING_AWAY) in reasons
    assert _with(entries, event="supersede_loop", peer_id=credential_peer)
    timeout = _with(entries, event="session_ended", reason="heartbeat_timeout")[0]
    assert timeout["level"] == "warning"

    messages = [e["message"] for e in entries]
    assert any(m.startswith("created the secret key file") for m in messages)
    assert any("delivered via" in m and "invitation" in m for m in messages)
    assert any(m.startswith("failed authentication from 127.0.0.1") for m in messages)
    assert any(m == "recorded the end of 1 sessions at shutdown" for m in messages)

    # A restart after a kill ends what the dead process left open, and says so.
    await server.start()
    agent = await deployment.connect_live(await deployment.enroll_raw("after-restart"))
    await deployment.heartbeating(1)
    server.kill()
    await agent.wait_closed(10)
    await server.start()
    restarted = _entries(server.process.log())
    assert any(
        e["message"] == "ended 1 connection rows left open by stopped servers" for e in restarted
    )
    [takeover] = _with(restarted, event="lease_takeover")
    server_id = await deployment.server_id(server)
    assert (takeover["rows"], takeover["replicas"]) == (1, server_id)


async def _day_of_events(
    deployment: Deployment, smtp: SmtpServer, ca_pem: str
) -> tuple[dict[str, str], str]:
    """Enrollment, sessions (superseded, closed, timed out), failed authentications, SMTP
    settings with a password, an invitation mail, and a shutdown; the secrets it used."""
    api = deployment.api
    enrolled = await deployment.enroll_raw("alpha")
    credential = enrolled["credential"]

    # Two agents on one credential push each other out: a supersede loop.
    agents = [await deployment.connect_live(enrolled) for _ in range(5)]
    for older in agents[:-1]:
        assert await older.wait_closed(10) == CloseCode.SUPERSEDED
    await agents[-1].close()  # a clean disconnect (1000)

    # An agent that authenticates and then never answers a ping times out.
    silent, _welcome = await open_session(deployment.server.ws_url, credential)
    try:

        async def timed_out() -> bool:
            rows = await deployment.rows(enrolled["device"]["peer_id"])
            return rows[-1].status == "timeout"

        await eventually(timed_out, HEARTBEAT_TIMEOUT * 5, "the silent agent times out")
    finally:
        await silent.close()

    # Failed authentications of every kind.
    wrong_token = "wm_0123456789ab_" + "Q" * 43
    wrong_key = "wmk_0123456789ab_" + "R" * 43
    wrong_credential = "wmd_0123456789ab_" + "S" * 43
    wrong_invitation = "wminv_0123456789ab_" + "T" * 43
    async with httpx.AsyncClient(base_url=deployment.server.url, timeout=10) as client:
        assert (await client.get("/api/v1/users/me", headers=auth(wrong_token))).status_code == 401
        response = await client.post(
            "/api/v1/enroll", json={"setup_key": wrong_key, "hostname": "nope"}
        )
        assert response.status_code in (401, 403, 404), response.text
        response = await client.post(
            "/api/v1/invitations/accept",
            json={"token": wrong_invitation},
            headers=auth(deployment.admin_token),
        )
        assert response.status_code in (400, 403, 404), response.text
    with pytest.raises(ConnectionClosed):  # closed with 4001 instead of a welcome
        await open_session(deployment.server.ws_url, wrong_credential)

    # SMTP settings with a password (creates the key file), and an invitation mail.
    response = await api(
        "PUT",
        "/smtp/global",
        json={
            "smtp_server": smtp.host,
            "smtp_port": smtp.port,
            "smtp_username": "mailer",
            "smtp_password": SMTP_PASSWORD,
            "from_email": "wiremesh@example.com",
            "ca_certificate": ca_pem,
        },
    )
    assert response.status_code == 200, response.text
    response = await api(
        "POST", f"/orgs/{deployment.org_id}/invitations", json={"email": "new@example.com"}
    )
    assert response.status_code == 201, response.text

    async def delivered() -> str | None:
        for message in smtp.inbox.messages:
            body = message.get_body(preferencelist=("plain",))
            match = INVITATION_TOKEN.search(body.get_content() if body is not None else "")
            if match:
                return match.group()
        return None

    invitation_token = await eventually(delivered, 20, "the invitation mail arrives")

    # A shutdown with one session live.
    await deployment.connect_live(enrolled)
    await deployment.heartbeating(1)
    await deployment.server.stop()
    secrets = {
        "admin token": deployment.admin_token,
        "setup key": deployment.setup_key,
        "device credential": credential,
        "SMTP password": SMTP_PASSWORD,
        "invitation token": invitation_token,
        "wrong token": wrong_token,
        "wrong setup key": wrong_key,
        "wrong credential": wrong_credential,
        "wrong invitation token": wrong_invitation,
    }
    return secrets, enrolled["device"]["peer_id"]


async def test_migrations_are_logged(tmp_path: Path) -> None:
    env = {**clean_environ(), "WIREMESH_DATA_DIR": str(tmp_path), "WIREMESH_LOG_FORMAT": "json"}
    process = await asyncio.create_subprocess_exec(
        *WIREMESH,
        "db",
        "upgrade",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    entries = [json.loads(line) for line in stderr.decode().splitlines()]
    upgrades = [e for e in entries if e["message"].startswith("Running upgrade")]
    assert upgrades, stderr.decode()
    assert {e["logger"] for e in upgrades} == {"alembic.runtime.migration"}
    assert "Database at revision" in stdout.decode()
