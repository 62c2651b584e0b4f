"""`wiremesh smtp` and `wiremesh secrets`: settings by command line, test mail, key rotation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cli.operator_cli import invoke, ok, query
from tests.server.mail.smtp_servers import SmtpServer, make_certificate, start_server
from wiremesh.server.config import Settings
from wiremesh.server.crypto import SecretBox, generate_key, parse_key_file
from wiremesh.server.mail.models import MailOutbox, SMTPSettings

pytestmark = pytest.mark.usefixtures("cli_database")

PASSWORD = "cli-s3cret"


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[SmtpServer, Path]]:
    certificate = make_certificate(tmp_path)
    server = start_server(certificate, mode="starttls", username="mailer", password=PASSWORD)
    yield server, certificate.cert_path
    server.stop()


def stored_passwords(settings: Settings) -> list[str | None]:
    async def read(session: AsyncSession) -> list[str | None]:
        rows = await session.execute(select(SMTPSettings.smtp_password).order_by(SMTPSettings.id))
        return list(rows.scalars())

    return query(settings, read)


def test_set_show_and_delete_the_global_settings(settings: Settings) -> None:
    out = ok(
        "smtp", "set", "--server", "smtp.example.com", "--port", "2525", "--username", "mailer",
        "--password-stdin", "--from", "noreply@example.com", "--json",
        input=f"{PASSWORD}\n",
    )  # fmt: skip
    data = json.loads(out)
    assert (data["scope"], data["smtp_port"], data["password_set"]) == ("global", 2525, True)
    assert PASSWORD not in out
    [token] = stored_passwords(settings)
    assert token is not None
    assert PASSWORD not in token
    assert (
        SecretBox(parse_key_file((settings.data_dir / "secret.key").read_text())).decrypt(token)
        == PASSWORD
    )

    # options not given keep their value, the password included
    ok("smtp", "set", "--port", "587", "--inactive")
    shown = json.loads(ok("smtp", "show", "--json"))
    assert (shown["smtp_server"], shown["smtp_port"], shown["is_active"]) == (
        "smtp.example.com", 587, False,
    )  # fmt: skip
    assert shown["password_set"] is True
    assert stored_passwords(settings) == [token]
    table = ok("smtp", "show")
    assert "PASSWORD_SET" in table
    assert PASSWORD not in table

    ok("smtp", "delete")
    missing = invoke("smtp", "show")
    assert missing.exit_code == 1
    assert "not_found" in missing.output


def test_org_settings_by_name_and_clear_errors(settings: Settings) -> None:
    ok("org", "create", "acme")
    created = json.loads(
        ok(
            "smtp",
            "set",
            "--org",
            "acme",
            "--server",
            "mail.acme.example.org",
            "--from",
            "it@acme.example.org",
            "--json",
        )
    )
    assert (created["scope"], created["password_set"], created["effective_tls"]) == (
        "org", False, "starttls",
    )  # fmt: skip
    for args, code in [
        (("--port", "70000"), "invalid_smtp_port"),
        (("--server", "bad host"), "invalid_smtp_server"),
        (("--from", "nobody"), "invalid_from_email"),
        (("--username", "u"), "password_required"),
        (("--tls-mode", "sometimes"), "--tls-mode"),
    ]:
        result = invoke("smtp", "set", "--org", "acme", *args)
        assert result.exit_code != 0, args
        assert code in result.output, result.output
    assert invoke("smtp", "show", "--org", "nope").exit_code == 1
    new = invoke("smtp", "set", "--server", "x.example.com")
    assert new.exit_code == 1
    assert "--from" in new.output


def test_test_mail_reports_the_server_answer(
    settings: Settings, smtp_server: tuple[SmtpServer, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, ca_file = smtp_server
    ok("org", "create", "acme")
    ok(
        "smtp", "set", "--org", "acme", "--server", "127.0.0.1", "--port", str(server.port),
        "--username", "mailer", "--password-stdin", "--from", "it@acme.example.org",
        "--ca-file", str(ca_file),
        input=PASSWORD,
    )  # fmt: skip
    delivered = invoke("smtp", "test", "--org", "acme", "--to", "ops@acme.example.org")
    assert delivered.exit_code == 0, delivered.output
    assert delivered.stdout.startswith("delivered:")
    assert "org settings" in delivered.stdout
    assert len(server.inbox.messages) == 1

    ok("smtp", "set", "--org", "acme", "--password-stdin", input="wrong")
    refused = invoke("smtp", "test", "--org", "acme", "--to", "ops@acme.example.org", "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["outcome"] == "auth_failed"
    assert len(server.inbox.messages) == 1

    async def test_rows(session: AsyncSession) -> list[tuple[str, str | None]]:
        rows = await session.execute(
            select(MailOutbox.status, MailOutbox.last_outcome).order_by(MailOutbox.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]

    assert query(settings, test_rows) == [("sent", "delivered"), ("failed", "auth_failed")]
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


def test_rotation_flow_with_the_key_file(settings: Settings) -> None:
    ok("smtp", "set", "--server", "smtp.example.com", "--username", "u", "--password-stdin",
       "--from", "a@example.com", input=PASSWORD)  # fmt: skip
    key_file = settings.data_dir / "secret.key"
    [old_key] = parse_key_file(key_file.read_text())
    [before] = stored_passwords(settings)

    refused = invoke("secrets", "drop-old-keys")
    assert refused.exit_code == 0  # one key only: nothing to drop
    ok("secrets", "add-key")
    new_key, still_old = parse_key_file(key_file.read_text())
    assert still_old == old_key
    assert new_key != old_key
    status = json.loads(ok("secrets", "status", "--json"))
    assert (status["secrets_under_newest_key"], status["secrets_under_older_keys"]) == (0, 1)
    early = invoke("secrets", "drop-old-keys")
    assert early.exit_code == 1
    assert "rotate" in early.output

    assert "Re-encrypted 1" in ok("secrets", "rotate")
    [after] = stored_passwords(settings)
    assert after is not None
    assert after != before
    assert SecretBox([new_key]).decrypt(after) == PASSWORD
    ok("secrets", "drop-old-keys")
    assert parse_key_file(key_file.read_text()) == [new_key]
    assert json.loads(ok("smtp", "show", "--json"))["password_set"] is True


def test_rotation_with_keys_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = generate_key(), generate_key()
    monkeypatch.setenv("WIREMESH_SECRET_KEYS", json.dumps([old]))
    ok("smtp", "set", "--server", "smtp.example.com", "--username", "u", "--password-stdin",
       "--from", "a@example.com", input=PASSWORD)  # fmt: skip
    assert not (settings.data_dir / "secret.key").exists()

    monkeypatch.setenv("WIREMESH_SECRET_KEYS", json.dumps([new]))  # the old key forgotten
    lost = invoke("secrets", "rotate")
    assert lost.exit_code == 1
    assert "secret_key_mismatch" in lost.output
    assert invoke("secrets", "add-key").exit_code == 1

    monkeypatch.setenv("WIREMESH_SECRET_KEYS", json.dumps([new, old]))
    ok("secrets", "rotate")
    [token] = stored_passwords(settings)
    assert token is not None
    assert SecretBox([new]).decrypt(token) == PASSWORD

    monkeypatch.setenv("WIREMESH_SECRET_KEYS", json.dumps(["not-a-key"]))
    invalid = invoke("secrets", "status")
    assert invalid.exit_code == 1
    assert "secret_key_invalid" in invalid.output


def test_generate_key_prints_a_usable_key() -> None:
    key = ok("secrets", "generate-key").strip()
    assert SecretBox([key]).decrypt(SecretBox([key]).encrypt("x")) == "x"
    help_text = " ".join(invoke("secrets", "rotate", "--help").stdout.split())
    flow = ["1. Add a new key", "2. `wiremesh secrets rotate`", "3. Drop the old key"]
    positions = [help_text.find(step) for step in flow]
    assert -1 not in positions, help_text
    assert positions == sorted(positions), help_text


def test_a_lost_key_file_is_not_silently_replaced(settings: Settings) -> None:
    """With the key file moved away, setting a password would have made a new key and left
    the stored password undecryptable; it is refused, saying how to restore or start over."""
    ok("org", "create", "acme")
    ok(
        "smtp", "set", "--server", "smtp.example.com", "--username", "mailer",
        "--password-stdin", "--from", "noreply@example.com", input=f"{PASSWORD}\n",
    )  # fmt: skip
    key_file = settings.data_dir / "secret.key"
    key_file.rename(settings.data_dir / "secret.key.moved")
    [before] = stored_passwords(settings)

    refused = invoke(
        "smtp", "set", "--org", "acme", "--server", "smtp.acme.example.org", "--username", "u",
        "--password-stdin", "--from", "it@acme.example.org", input="other-pw\n",
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "secret_key_missing" in refused.output
    assert "Restore the key file" in refused.output
    assert "--discard-lost-secrets" in refused.output
    assert not key_file.exists()
    assert stored_passwords(settings) == [before]
    add = invoke("secrets", "add-key")
    assert add.exit_code == 1
    assert "Restore the key file" in add.output
    assert not key_file.exists()

    # Restored: everything works again, nothing was lost.
    (settings.data_dir / "secret.key.moved").rename(key_file)
    ok(
        "smtp", "set", "--org", "acme", "--server", "smtp.acme.example.org", "--username", "u",
        "--password-stdin", "--from", "it@acme.example.org", input="other-pw\n",
    )  # fmt: skip
    assert json.loads(ok("secrets", "status", "--json"))["secrets_not_decryptable"] == 0


def test_a_key_lost_for_good_is_replaced_on_request(settings: Settings) -> None:
    ok(
        "smtp", "set", "--server", "smtp.example.com", "--username", "mailer",
        "--password-stdin", "--from", "noreply@example.com", input=f"{PASSWORD}\n",
    )  # fmt: skip
    key_file = settings.data_dir / "secret.key"
    key_file.unlink()
    out = ok("secrets", "add-key", "--discard-lost-secrets")
    assert "Cleared 1 password(s)" in out
    assert len(parse_key_file(key_file.read_text())) == 1
    assert stored_passwords(settings) == [None]
    shown = json.loads(ok("smtp", "show", "--json"))
    assert shown["password_set"] is False
    assert "set the password again" in shown["paused_reason"]
    ok("smtp", "set", "--password-stdin", input=f"{PASSWORD}\n")
    shown = json.loads(ok("smtp", "show", "--json"))
    assert (shown["password_set"], shown["paused_at"]) == (True, None)
    assert json.loads(ok("secrets", "status", "--json"))["secrets_not_decryptable"] == 0


def test_from_name_and_resume(settings: Settings) -> None:
    ok("org", "create", "acme")
    ok(
        "smtp", "set", "--org", "acme", "--server", "smtp.acme.example.org",
        "--from", "it@acme.example.org", "--from-name", "Acme IT",
    )  # fmt: skip
    ok("smtp", "set", "--org", "acme", "--port", "2525")  # the name is kept
    shown = json.loads(ok("smtp", "show", "--org", "acme", "--json"))
    assert (shown["from_name"], shown["smtp_port"], shown["paused_at"]) == ("Acme IT", 2525, None)
    not_paused = invoke("smtp", "resume", "--org", "acme")
    assert not_paused.exit_code == 1
    assert "smtp_not_paused" in not_paused.output

    async def pause(session: AsyncSession) -> None:
        row = (await session.execute(select(SMTPSettings))).scalar_one()
        row.paused_at = row.updated_at
        row.paused_reason = "535 5.7.8 no"
        await session.commit()

    query(settings, pause)
    assert json.loads(ok("smtp", "show", "--org", "acme", "--json"))["paused_reason"] == (
        "535 5.7.8 no"
    )
    resumed = json.loads(ok("smtp", "resume", "--org", "acme", "--json"))
    assert (resumed["paused_at"], resumed["paused_reason"]) == (None, None)
    ok("smtp", "set", "--org", "acme", "--from-name", "")
    assert json.loads(ok("smtp", "show", "--org", "acme", "--json"))["from_name"] is None
    long_name = invoke("smtp", "set", "--org", "acme", "--from-name", "x" * 129)
    assert long_name.exit_code == 1
    assert "invalid_from_name" in long_name.output


def test_status_without_the_key_file_says_to_restore_it(settings: Settings) -> None:
    ok(
        "smtp", "set", "--server", "smtp.example.com", "--username", "mailer",
        "--password-stdin", "--from", "noreply@example.com", input=f"{PASSWORD}\n",
    )  # fmt: skip
    (settings.data_dir / "secret.key").unlink()
    status = invoke("secrets", "status")
    assert status.exit_code == 1
    assert "restore it from your backup" in status.output
