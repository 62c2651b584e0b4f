"""The SMTP transport against real servers: what each answer is reported as."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tests.server.mail.smtp_servers import HOST, Certificate, SilentServer, SmtpServer
from tests.support.ports import free_port
from wiremesh.server.mail.models import TlsMode
from wiremesh.server.mail.outcomes import Outcome
from wiremesh.server.mail.transport import OutgoingMail, ResolvedSMTP, SmtpTransport, build_message

MAIL = OutgoingMail(to="ops@example.org", subject="Hello", text="plain body", html="<p>html</p>")


def config_for(server: SmtpServer, certificate: Certificate, **changes: object) -> ResolvedSMTP:
    base = ResolvedSMTP(
        settings_id=1,
        org_id=None,
        host=HOST,
        port=server.port,
        username="mailer",
        password="s3cret-pw",
        from_email="noreply@example.com",
        tls=TlsMode.STARTTLS if server.mode == "starttls" else TlsMode.IMPLICIT,
        verify_certificate=True,
        ca_certificate=certificate.pem,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_starttls_with_auth_delivers_text_and_html(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="starttls")
    report = await SmtpTransport(timeout=5).send(config_for(server, certificate), MAIL)
    assert report.outcome is Outcome.DELIVERED, report
    assert report.permanent is False
    assert server.inbox.logins == ["mailer"]
    [message] = server.inbox.messages
    assert message["Subject"] == "Hello"
    assert message["From"] == "noreply@example.com"
    assert server.inbox.recipients == [["ops@example.org"]]
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None
    assert plain.get_content().strip() == "plain body"
    assert html is not None
    assert "<p>html</p>" in html.get_content()


async def test_implicit_tls_delivers(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="implicit")
    report = await SmtpTransport(timeout=5).send(config_for(server, certificate), MAIL)
    assert report.outcome is Outcome.DELIVERED, report
    assert len(server.inbox.messages) == 1
    assert server.inbox.logins == ["mailer"]


async def test_implicit_tls_wrong_password_is_auth_failed(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="implicit")
    config = config_for(server, certificate, password="nope")
    report = await SmtpTransport(timeout=5).send(config, MAIL)
    assert report.outcome is Outcome.AUTH_FAILED
    assert server.inbox.messages == []


async def test_wrong_password_is_a_permanent_auth_failure_after_one_login(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    """The server offers two mechanisms; a wrong password costs it one failed login."""
    server = smtp_servers(mode="starttls")
    config = config_for(server, certificate, password="wrong")
    report = await SmtpTransport(timeout=5).send(config, MAIL)
    assert report.outcome is Outcome.AUTH_FAILED
    assert report.smtp_code == 535
    assert report.permanent
    assert "wrong" not in report.message
    assert server.inbox.messages == []
    assert server.inbox.failed_logins == ["PLAIN"]


async def test_untrusted_self_signed_certificate_is_tls_failed(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="starttls")
    report = await SmtpTransport(timeout=5).send(
        config_for(server, certificate, ca_certificate=None), MAIL
    )
    assert report.outcome is Outcome.TLS_FAILED
    assert "certificate" in report.message
    assert server.inbox.messages == []


async def test_implicit_tls_untrusted_certificate_is_tls_failed(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="implicit")
    report = await SmtpTransport(timeout=5).send(
        config_for(server, certificate, ca_certificate=None), MAIL
    )
    assert report.outcome is Outcome.TLS_FAILED


async def test_verification_can_be_turned_off_for_a_self_signed_relay(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="starttls")
    config = config_for(server, certificate, ca_certificate=None, verify_certificate=False)
    report = await SmtpTransport(timeout=5).send(config, MAIL)
    assert report.outcome is Outcome.DELIVERED, report


async def test_plain_text_to_a_starttls_only_server_is_tls_failed(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    """With credentials, the server offers no AUTH before STARTTLS; without, it answers MAIL
    with "530 Must issue a STARTTLS command first": both are about TLS, not the password."""
    server = smtp_servers(mode="starttls")
    with_login = await SmtpTransport(timeout=5).send(
        config_for(server, certificate, tls=TlsMode.NONE), MAIL
    )
    assert with_login.outcome is Outcome.TLS_FAILED, with_login
    without_login = await SmtpTransport(timeout=5).send(
        config_for(server, certificate, tls=TlsMode.NONE, username=None, password=None), MAIL
    )
    assert without_login.outcome is Outcome.TLS_FAILED, without_login
    assert without_login.smtp_code == 530
    assert "STARTTLS" in without_login.message
    assert not without_login.permanent
    assert server.inbox.messages == server.inbox.failed_logins == []


async def test_starttls_to_a_server_that_does_not_offer_it_is_tls_failed(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="plain")
    report = await SmtpTransport(timeout=5).send(
        config_for(server, certificate, tls=TlsMode.STARTTLS), MAIL
    )
    assert report.outcome is Outcome.TLS_FAILED, report
    assert "does not offer STARTTLS" in report.message
    assert server.inbox.messages == []
    # The same server in plain text delivers, so it was the TLS setting.
    plain = await SmtpTransport(timeout=5).send(
        config_for(server, certificate, tls=TlsMode.NONE), MAIL
    )
    assert plain.outcome is Outcome.DELIVERED, plain


async def test_starttls_to_an_implicit_tls_port_times_out_at_the_greeting(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    """The misconfiguration that hangs: TCP connects, the server waits for a TLS hello and the
    client for a greeting. The greeting timeout ends it, not the longer command timeout."""
    server = smtp_servers(mode="implicit")
    transport = SmtpTransport(timeout=60, greeting_timeout=0.5)
    report = await transport.send(config_for(server, certificate, tls=TlsMode.STARTTLS), MAIL)
    assert report.outcome is Outcome.TIMEOUT, report
    assert "greeting" in report.message


async def test_nothing_listening_is_connection_refused(certificate: Certificate) -> None:
    config = ResolvedSMTP(
        settings_id=1,
        org_id=None,
        host=HOST,
        port=free_port(),
        username=None,
        password=None,
        from_email="noreply@example.com",
        tls=TlsMode.STARTTLS,
        verify_certificate=True,
    )
    report = await SmtpTransport(timeout=5).send(config, MAIL)
    assert report.outcome is Outcome.CONNECTION_REFUSED
    assert str(config.port) in report.message


async def test_a_server_that_never_answers_is_timeout(silent_server: SilentServer) -> None:
    config = ResolvedSMTP(
        settings_id=1,
        org_id=None,
        host=HOST,
        port=silent_server.port,
        username=None,
        password=None,
        from_email="noreply@example.com",
        tls=TlsMode.STARTTLS,
        verify_certificate=True,
    )
    report = await SmtpTransport(timeout=0.5).send(config, MAIL)
    assert report.outcome is Outcome.TIMEOUT
    assert not report.permanent


async def test_refused_recipient_is_a_permanent_rejection(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="starttls", reject_recipients=True)
    report = await SmtpTransport(timeout=5).send(config_for(server, certificate), MAIL)
    assert report.outcome is Outcome.REJECTED
    assert report.permanent
    assert report.smtp_code == 550


def test_password_is_not_in_the_repr() -> None:
    config = ResolvedSMTP(
        settings_id=1,
        org_id=3,
        host="smtp.example.com",
        port=587,
        username="u",
        password="hunter2-secret",
        from_email="a@example.com",
        tls=TlsMode.STARTTLS,
        verify_certificate=True,
    )
    assert "hunter2-secret" not in repr(config)


def test_message_headers_cannot_be_injected_and_ids_are_stable() -> None:
    config = ResolvedSMTP(
        settings_id=1,
        org_id=3,
        host="smtp.example.com",
        port=587,
        username=None,
        password=None,
        from_email="noreply@example.com",
        tls=TlsMode.STARTTLS,
        verify_certificate=True,
    )
    mail = OutgoingMail(to="a@example.org", subject="s", text="t", reference="wiremesh.7.1")
    first = build_message(config, mail)
    second = build_message(config, mail)
    assert first["Message-ID"] == second["Message-ID"] == "<wiremesh.7.1@example.com>"
    assert first["Auto-Submitted"] == "auto-generated"


async def test_the_from_name_is_shown_beside_the_address(
    smtp_servers: Callable[..., SmtpServer], certificate: Certificate
) -> None:
    server = smtp_servers(mode="starttls")
    config = config_for(server, certificate, from_name="Ops, Alpha Ünit")
    report = await SmtpTransport(timeout=5).send(config, MAIL)
    assert report.outcome is Outcome.DELIVERED, report
    [message] = server.inbox.messages
    assert message["From"].addresses[0].display_name == "Ops, Alpha Ünit"
    assert message["From"].addresses[0].addr_spec == "noreply@example.com"
