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
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

import aiosmtplib

from wiremesh.server.config import MAIL_COMMANDS_PER_SEND
from wiremesh.server.db.base import utcnow
from wiremesh.server.mail import destinations
from wiremesh.server.mail.models import TlsMode

logger = logging.getLogger("wiremesh.mail")

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_GREETING_TIMEOUT = 10.0
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
    # Shown beside the address in From ("Example Ops <noreply@example.com>").
    from_name: str | None = None
    # The settings row's updated_at: a pause applies only to the settings that failed.
    settings_version: datetime | None = None

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
    async def send(
        self, config: ResolvedSMTP, mail: OutgoingMail, progress: SendProgress | None = None
    ) -> DeliveryReport: ...


def build_message(config: ResolvedSMTP, mail: OutgoingMail) -> EmailMessage:
    """A multipart/alternative message (plain text + HTML) from the configured sender."""
    message = EmailMessage()
    if config.from_name:
        # The header registry quotes and encodes the name (commas, non-ASCII) as needed.
        message["From"] = Address(display_name=config.from_name, addr_spec=config.from_email)
    else:
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


def classify(exc: BaseException, config: ResolvedSMTP, stage: str = "send") -> DeliveryReport:
    """What an exception from sending means, in words an operator can act on.

    ``stage`` is the step that failed (connect, greeting, starttls, auth, mail, rcpt, data):
    a 5xx answer to AUTH means the credentials are wrong (permanent), while a "530 Must issue
    a STARTTLS command first" at any step means the connection was not secured.
    """
    server = _server(config)
    chain = _cause_chain(exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 530:
        if "TLS" in exc.message.upper():
            return DeliveryReport(
                Outcome.TLS_FAILED,
                _clip(f"{server} requires TLS first (set use_tls): {exc.code} {exc.message}"),
                exc.code,
            )
        return DeliveryReport(
            Outcome.AUTH_FAILED,
            _clip(f"{server} requires authentication: {exc.code} {exc.message}"),
            exc.code,
            permanent=True,
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or (
        stage == "auth" and isinstance(exc, aiosmtplib.SMTPResponseException)
    ):
        assert isinstance(exc, aiosmtplib.SMTPResponseException)
        return DeliveryReport(
            Outcome.AUTH_FAILED,
            _clip(f"authentication failed at {server}: {exc.code} {exc.message}"),
            exc.code,
            permanent=exc.code >= 500,
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
    if isinstance(exc, aiosmtplib.SMTPResponseException) and stage != "greeting":
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
    if isinstance(exc, StartTlsMissing):
        return DeliveryReport(
            Outcome.TLS_FAILED,
            f"{server} does not offer STARTTLS (is it an implicit-TLS port? then set "
            "tls_mode implicit)",
        )
    if isinstance(exc, StartTlsRequired):
        return DeliveryReport(
            Outcome.TLS_FAILED, f"{server} lets clients log in only after STARTTLS: set use_tls"
        )
    if isinstance(exc, NoLoginMechanism):
        return DeliveryReport(Outcome.AUTH_FAILED, _clip(f"{server} {exc}"), permanent=True)
    if any(isinstance(item, TimeoutError) for item in chain):
        return DeliveryReport(Outcome.TIMEOUT, _clip(f"{server} timed out ({stage}): {exc}"))
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return DeliveryReport(
            Outcome.CONNECTION_REFUSED, f"{server} refused the connection (nothing listens there)"
        )
    if stage == "starttls" and isinstance(exc, aiosmtplib.SMTPException):
        return DeliveryReport(Outcome.TLS_FAILED, _clip(f"STARTTLS with {server} failed: {exc}"))
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


class StartTlsMissing(aiosmtplib.SMTPException):
    """The server's EHLO does not offer STARTTLS, though the settings ask for it."""


class StartTlsRequired(aiosmtplib.SMTPException):
    """The server offers AUTH only after STARTTLS, and the settings send in plain text."""


class NoLoginMechanism(aiosmtplib.SMTPException):
    """Credentials are configured but the server offers no AUTH mechanism we speak."""


# One mechanism per attempt, the first the server offers in this order: a wrong password
# costs the relay one failed login, not one per mechanism.
_MECHANISMS = ("plain", "login", "cram-md5")


@dataclass
class SendProgress:
    """How far a send got, read by the worker when it stops: before ``data_sent`` nothing can
    have been delivered (cancelling is safe); after it the server may accept the mail."""

    data_sent: bool = False
    accepted: bool = False


class SmtpTransport:
    """The real transport: one connection per mail, driven step by step through aiosmtplib.

    Connecting and the server's greeting have their own short timeouts, so a relay that accepts
    TCP and never speaks is given up quickly; each later command has ``timeout``. After the
    reply to DATA the socket is closed without QUIT: the answer that matters has arrived, and
    a stop must not wait for a slow relay's goodbye.
    """

    # Commands after the greeting: EHLO, STARTTLS, EHLO, AUTH (two round trips for LOGIN),
    # MAIL, RCPT, DATA, end of data.
    COMMANDS = MAIL_COMMANDS_PER_SEND

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        greeting_timeout: float | None = None,
        local_hostname: str | None = None,
    ):
        self.timeout = timeout
        self.connect_timeout = (
            min(timeout, DEFAULT_CONNECT_TIMEOUT) if connect_timeout is None else connect_timeout
        )
        self.greeting_timeout = (
            min(timeout, DEFAULT_GREETING_TIMEOUT) if greeting_timeout is None else greeting_timeout
        )
        self.local_hostname = local_hostname

    @property
    def longest_send(self) -> float:
        """The most one send may take; a claim lease must be longer."""
        return self.connect_timeout + self.greeting_timeout + self.timeout * self.COMMANDS

    async def send(
        self, config: ResolvedSMTP, mail: OutgoingMail, progress: SendProgress | None = None
    ) -> DeliveryReport:
        progress = progress if progress is not None else SendProgress()
        message = build_message(config, mail)
        try:
            context = tls_context(config) if config.tls is not TlsMode.NONE else None
        except ssl.SSLError as exc:
            return DeliveryReport(
                Outcome.TLS_FAILED, _clip(f"the trusted CA certificate is unusable: {exc}")
            )
        stage = "connect"
        sock: socket.socket | None = None
        client: aiosmtplib.SMTP | None = None
        try:
            async with asyncio.timeout(self.longest_send):
                sock = await self._connect(config)
                stage = "greeting"
                client = aiosmtplib.SMTP(
                    hostname=config.host,
                    timeout=self.timeout,
                    use_tls=config.tls is TlsMode.IMPLICIT,
                    start_tls=False,
                    tls_context=context,
                    local_hostname=self.local_hostname,
                )
                await client.connect(sock=sock, timeout=self.greeting_timeout)
                stage = "ehlo"
                await client.ehlo()
                if config.tls is TlsMode.STARTTLS:
                    stage = "starttls"
                    if not client.supports_extension("starttls"):
                        raise StartTlsMissing("STARTTLS not offered")
                    await client.starttls()
                    await client.ehlo()
                if config.username is not None and config.password is not None:
                    stage = "auth"
                    await self._login(client, config.username, config.password)
                stage = "mail"
                await client.mail(config.from_email)
                stage = "rcpt"
                await client.rcpt(mail.to)  # raises SMTPRecipientRefused for a refusal
                stage = "data"
                progress.data_sent = True
                reply = await client.data(message.as_bytes())
                progress.accepted = True
        except destinations.DestinationForbidden as exc:
            return DeliveryReport(Outcome.DESTINATION_FORBIDDEN, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return neutral(classify(exc, config, stage), config)
        finally:
            # No QUIT: on success the answer is in; on failure or cancellation the server
            # gets nothing more from us.
            _abort(client, sock)
        return DeliveryReport(
            Outcome.DELIVERED,
            _clip(f"{_server(config)} accepted the mail: {reply.code} {reply.message}"),
            250,
        )

    @staticmethod
    async def _login(client: aiosmtplib.SMTP, username: str, password: str) -> None:
        offered = client.server_auth_methods if client.supports_extension("auth") else []
        for mechanism in _MECHANISMS:
            if mechanism in offered:
                method = getattr(client, f"auth_{mechanism.replace('-', '')}")
                await method(username, password)
                return
        if (
            client.supports_extension("starttls")
            and client.get_transport_info("sslcontext") is None
        ):
            raise StartTlsRequired("offers login only after STARTTLS")
        raise NoLoginMechanism(
            "offers no login mechanism on this connection (PLAIN, LOGIN or CRAM-MD5); "
            "if it only offers one over TLS, enable TLS"
        )

    async def _connect(self, config: ResolvedSMTP) -> socket.socket:
        """A socket connected to an address of ``config.host`` within ``connect_timeout``.

        For an org's settings on a server that forbids private hosts, every address the name
        has must be allowed, so a rebinding name cannot slip one in. TLS still verifies the
        certificate against the host name."""
        if config.restrict_destination:
            addresses = await destinations.resolve(config.host, config.port)
            if any(destinations.is_forbidden(address) for address in addresses):
                raise destinations.DestinationForbidden(config.host)
            targets = [
                (socket.AF_INET6 if address.version == 6 else socket.AF_INET, str(address))
                for address in addresses
            ]
        else:
            infos = await asyncio.get_running_loop().getaddrinfo(
                config.host, config.port, type=socket.SOCK_STREAM
            )
            targets = [(family, str(sockaddr[0])) for family, _, _, _, sockaddr in infos]
        # Each address in turn, as a plain connect would (a dual-stack name whose IPv6 address
        # is unreachable from here still works over IPv4), within one timeout.
        failure: BaseException | None = None
        async with asyncio.timeout(self.connect_timeout):
            for family, address in targets:
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await asyncio.get_running_loop().sock_connect(sock, (address, config.port))
                except OSError as exc:
                    sock.close()
                    failure = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                return sock
        if failure is None:
            raise OSError(f"{config.host} has no address")
        raise failure


def _abort(client: aiosmtplib.SMTP | None, sock: socket.socket | None) -> None:
    """Close at once, without QUIT or a TLS goodbye. Once the client has a transport the
    socket is the transport's (closing it underneath would leave the transport unclosed)."""
    transport = client.transport if client is not None else None
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    if client is not None:
        client.close()
    if transport is None and sock is not None:
        sock.close()


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

    async def send(
        self, config: ResolvedSMTP, mail: OutgoingMail, progress: SendProgress | None = None
    ) -> DeliveryReport:
        if self.fail_with:
            return self.fail_with.pop(0)
        self.sent.append(SentMail(config, mail, build_message(config, mail)))
        return DeliveryReport(Outcome.DELIVERED, "accepted by the fake transport", 250)
