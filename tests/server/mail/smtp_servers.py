"""Real SMTP servers for the tests: aiosmtpd with a self-signed certificate made here.

Three kinds: STARTTLS with AUTH required over TLS, implicit TLS (port-465 style) with AUTH,
and a socket that accepts connections but never answers (for time-outs).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Certificate:
    pem: str
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def make_certificate(directory: Path, common_name: str = "wiremesh-test-smtp") -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, usable as its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    cert_path = directory / f"{common_name}.crt"
    key_path = directory / f"{common_name}.key"
    cert_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(pem=pem, cert_path=cert_path, key_path=key_path)


@dataclass
class Inbox:
    """What a server accepted; filled from the server's thread."""

    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    failed_logins: list[str] = field(default_factory=list)
    # Seconds between taking a message (it counts as delivered: a real relay has queued it)
    # and answering 250: a slow relay, for stops in the middle of DATA.
    data_delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.recipients.append(list(envelope.rcpt_tos))
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return "250 2.0.0 OK: queued as test"


class _RejectingInbox(Inbox):
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return "550 5.1.1 no such mailbox here"


def _authenticator(inbox: Inbox, username: str, password: str) -> Callable[..., AuthResult]:
    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        with inbox._lock:
            if ok:
                inbox.logins.append(username)
            else:
                inbox.failed_logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    return authenticate


@dataclass
class SmtpServer:
    mode: str
    port: int
    inbox: Inbox
    controller: Controller
    running: bool = True

    @property
    def host(self) -> str:
        return HOST

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.controller.stop()


def start_server(
    certificate: Certificate,
    *,
    mode: str = "starttls",
    username: str = "mailer",
    password: str = "s3cret-pw",  # noqa: S107 - the test server's login
    port: int | None = None,
    reject_recipients: bool = False,
    data_delay: float = 0.0,
) -> SmtpServer:
    """``starttls``: STARTTLS required, AUTH only over TLS; ``implicit``: TLS from the first
    byte (port-465 style), AUTH required; ``plain``: no TLS offered at all, AUTH in plain
    text."""
    inbox: Inbox = _RejectingInbox() if reject_recipients else Inbox()
    inbox.data_delay = data_delay
    port = port or free_port()
    common: dict[str, Any] = {
        "hostname": HOST,
        "port": port,
        "authenticator": _authenticator(inbox, username, password),
        "auth_required": True,
        "auth_require_tls": True,
        "ready_timeout": 10.0,
    }
    if mode == "starttls":
        controller = Controller(
            inbox, tls_context=certificate.server_context(), require_starttls=True, **common
        )
    elif mode == "implicit":
        # aiosmtpd does not count implicit TLS as TLS for auth_require_tls, so AUTH is offered
        # on this (TLS-only) socket without it; the inbox records every successful login.
        common.update(auth_required=False, auth_require_tls=False)
        controller = Controller(inbox, ssl_context=certificate.server_context(), **common)
    elif mode == "plain":
        common.update(auth_required=False, auth_require_tls=False)
        controller = Controller(inbox, **common)
    else:
        raise ValueError(mode)
    controller.start()
    return SmtpServer(mode=mode, port=port, inbox=inbox, controller=controller)


class SilentServer:
    """Accepts TCP connections and never says a word: an SMTP client times out."""

    def __init__(self) -> None:
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self.server = await asyncio.start_server(hold, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
