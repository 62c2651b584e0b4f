"""Talking to an SMTP server, behind a narrow interface with an in-memory fake beside it.

A transport never raises for what an SMTP server or the network does: it returns a
``DeliveryReport`` saying plainly what happened (delivered, authentication failed, TLS failed,
connection refused, timed out, rejected ...) and whether trying again can help.
"""

from __future__ import annotations

import asyncio
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
from wiremesh.server.mail.outcomes import (
    DeliveryReport,
    NoLoginMechanism,
    Outcome,
    StartTlsMissing,
    StartTlsRequired,
    classify,
    clip,
    neutral,
    server_name,
)

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_GREETING_TIMEOUT = 10.0


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
                Outcome.TLS_FAILED, clip(f"the trusted CA certificate is unusable: {exc}")
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
            clip(f"{server_name(config)} accepted the mail: {reply.code} {reply.message}"),
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
