"""Talking to an SMTP server, behind a narrow interface with an in-memory fake beside it.

A transport never raises for what an SMTP server or the network does: it returns a
``DeliveryReport`` saying plainly what happened (delivered, authentication failed, TLS failed,
connection refused, timed out, rejected ...) and whether trying again can help.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

import aiosmtplib

from wiremesh.server.db.base import utcnow
from wiremesh.server.mail import destinations
from wiremesh.server.mail.models import TlsMode

logger = logging.getLogger("wiremesh.mail")

DEFAULT_TIMEOUT = 30.0
MAX_ERROR_LENGTH = 1000


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    AUTH_FAILED = "auth_failed"
    TLS_FAILED = "tls_failed"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_FAILED = "connection_failed"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    SMTP_NOT_CONFIGURED = "smtp_not_configured"
    SECRET_KEY_MISMATCH = "secret_key_mismatch"  # noqa: S105 - an outcome code
    CANCELLED = "cancelled"
    DESTINATION_FORBIDDEN = "smtp_destination_forbidden"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    outcome: Outcome
    message: str
    smtp_code: int | None = None
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED


@dataclass(frozen=True, slots=True)
class ResolvedSMTP:
    """The configuration a mail is sent with, password decrypted; never logged or returned."""

    settings_id: int
    org_id: int | None
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    from_email: str
    tls: TlsMode
    verify_certificate: bool
    ca_certificate: str | None = field(default=None, repr=False)
    # An org's settings on a server that does not allow private hosts: every connection
    # goes to an address checked by ``destinations`` (see there).
    restrict_destination: bool = False

    @property
    def scope(self) -> str:
        return "global" if self.org_id is None else "org"


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """What to send, independent of any configuration."""

    to: str
    subject: str
    text: str
    html: str | None = None
    # Stable across retries (the outbox row), so a receiver can spot a resend.
    reference: str | None = None
    auto_submitted: bool = True


class MailTransport(Protocol):
    async def send(self, config: ResolvedSMTP, mail: OutgoingMail) -> DeliveryReport: ...


def build_message(config: ResolvedSMTP, mail: OutgoingMail) -> EmailMessage:
    """A multipart/alternative message (plain text + HTML) from the configured sender."""
    message = EmailMessage()
    message["From"] = config.from_email
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(utcnow())
    domain = config.from_email.rpartition("@")[2] or "wiremesh.invalid"
    message["Message-ID"] = (
        f"<{mail.reference}@{domain}>" if mail.reference else make_msgid(domain=domain)
    )
    if mail.auto_submitted:
        message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html")
    return message


def tls_context(config: ResolvedSMTP) -> ssl.SSLContext:
    """Verified by default; an extra trusted CA, or no verification for a self-signed relay."""
    context = ssl.create_default_context()
    if not config.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif config.ca_certificate:
        context.load_verify_locations(cadata=config.ca_certificate)
    return context


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 3] + "..."


def _server(config: ResolvedSMTP) -> str:
    return f"{config.host}:{config.port}"


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def classify(exc: BaseException, config: ResolvedSMTP) -> DeliveryReport:
    """What an exception from sending means, in words an operator can act on."""
    server = _server(config)
    chain = _cause_chain(exc)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or (
        isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 530
    ):
        return DeliveryReport(
            Outcome.AUTH_FAILED,
            _clip(f"authentication failed at {server}: {exc.code} {exc.message}"),
            exc.code,
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        code = refused.code if refused is not None else None
        detail = f"{refused.code} {refused.message}" if refused is not None else str(exc)
        return DeliveryReport(
            Outcome.REJECTED if code is None or code >= 500 else Outcome.DEFERRED,
            _clip(f"{server} refused the recipient: {detail}"),
            code,
            permanent=code is None or code >= 500,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        permanent = exc.code >= 500
        verb = "rejected the mail" if permanent else "deferred the mail"
        return DeliveryReport(
            Outcome.REJECTED if permanent else Outcome.DEFERRED,
            _clip(f"{server} {verb}: {exc.code} {exc.message}"),
            exc.code,
            permanent=permanent,
        )
    if any(isinstance(item, ssl.SSLError) for item in chain):
        reason = next(item for item in chain if isinstance(item, ssl.SSLError))
        return DeliveryReport(
            Outcome.TLS_FAILED, _clip(f"TLS with {server} failed: {_ssl_reason(reason)}")
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        outcome = Outcome.TLS_FAILED if "TLS" in str(exc).upper() else Outcome.ERROR
        return DeliveryReport(outcome, _clip(f"{server}: {exc}"))
    if isinstance(exc, aiosmtplib.SMTPException) and "AUTH" in str(exc).upper():
        return DeliveryReport(
            Outcome.AUTH_FAILED, _clip(f"{server} offers no way to log in: {exc}")
        )
    if any(isinstance(item, TimeoutError) for item in chain):
        return DeliveryReport(Outcome.TIMEOUT, _clip(f"{server} timed out: {exc}"))
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return DeliveryReport(
            Outcome.CONNECTION_REFUSED, f"{server} refused the connection (nothing listens there)"
        )
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return DeliveryReport(
            Outcome.CONNECTION_FAILED, _clip(f"the connection to {server} failed: {exc}")
        )
    return DeliveryReport(Outcome.ERROR, _clip(f"sending through {server} failed: {exc!r}"))


def _ssl_reason(exc: ssl.SSLError) -> str:
    verify_message = getattr(exc, "verify_message", None)
    if verify_message:
        return f"certificate verification failed: {verify_message}"
    return exc.reason or str(exc)


_UNREACHABLE = frozenset({Outcome.TIMEOUT, Outcome.CONNECTION_REFUSED, Outcome.CONNECTION_FAILED})


def neutral(report: DeliveryReport, config: ResolvedSMTP) -> DeliveryReport:
    """For an org's own settings, a refusal, a timeout and any other failure to connect are
    one answer: an org admin must not learn from it whether a port is closed or filtered.
    The operator still finds the detail in the server's log."""
    if config.org_id is None or report.outcome not in _UNREACHABLE:
        return report
    logger.info("org %s: SMTP connection failed: %s", config.org_id, report.message)
    return DeliveryReport(
        Outcome.CONNECTION_FAILED,
        f"could not connect to {_server(config)}, or it did not answer in time",
    )


class SmtpTransport:
    """The real transport: one connection per mail, through aiosmtplib."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, local_hostname: str | None = None):
        self.timeout = timeout
        self.local_hostname = local_hostname

    async def send(self, config: ResolvedSMTP, mail: OutgoingMail) -> DeliveryReport:
        message = build_message(config, mail)
        try:
            context = tls_context(config) if config.tls is not TlsMode.NONE else None
        except ssl.SSLError as exc:
            return DeliveryReport(
                Outcome.TLS_FAILED, _clip(f"the trusted CA certificate is unusable: {exc}")
            )
        try:
            async with asyncio.timeout(self.timeout * 4):
                sock = await self._connect_checked(config) if config.restrict_destination else None
                _errors, reply = await aiosmtplib.send(
                    message,
                    hostname=config.host,
                    port=None if sock is not None else config.port,
                    sock=sock,
                    username=config.username if config.password is not None else None,
                    password=config.password if config.username is not None else None,
                    use_tls=config.tls is TlsMode.IMPLICIT,
                    start_tls=config.tls is TlsMode.STARTTLS,
                    tls_context=context,
                    timeout=self.timeout,
                    local_hostname=self.local_hostname,
                )
        except destinations.DestinationForbidden as exc:
            return DeliveryReport(Outcome.DESTINATION_FORBIDDEN, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return neutral(classify(exc, config), config)
        return DeliveryReport(
            Outcome.DELIVERED, _clip(f"{_server(config)} accepted the mail: {reply}"), 250
        )

    async def _connect_checked(self, config: ResolvedSMTP) -> socket.socket:
        """A socket connected to an address of ``config.host`` that was checked just now:
        every address the name has must be allowed, so a rebinding name cannot slip one in.
        TLS still verifies the certificate against the host name."""
        addresses = await destinations.resolve(config.host, config.port)
        if any(destinations.is_forbidden(address) for address in addresses):
            raise destinations.DestinationForbidden(config.host)
        # Each checked address in turn, as a plain connect would (a dual-stack name whose
        # IPv6 address is unreachable from here still works over IPv4), within one timeout.
        failure: BaseException | None = None
        async with asyncio.timeout(self.timeout):
            for address in addresses:
                family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await asyncio.get_running_loop().sock_connect(sock, (str(address), config.port))
                except OSError as exc:
                    sock.close()
                    failure = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                return sock
        assert failure is not None  # resolve() returns at least one address
        raise failure


@dataclass
class SentMail:
    config: ResolvedSMTP
    mail: OutgoingMail
    message: EmailMessage


class FakeTransport:
    """In memory: records what would be sent; ``fail_with`` makes the next sends fail."""

    def __init__(self) -> None:
        self.sent: list[SentMail] = []
        self.fail_with: list[DeliveryReport] = []

    async def send(self, config: ResolvedSMTP, mail: OutgoingMail) -> DeliveryReport:
        if self.fail_with:
            return self.fail_with.pop(0)
        self.sent.append(SentMail(config, mail, build_message(config, mail)))
        return DeliveryReport(Outcome.DELIVERED, "accepted by the fake transport", 250)
