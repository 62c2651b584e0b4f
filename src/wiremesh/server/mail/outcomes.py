"""What a send did, in words an operator can act on: the outcome labels, and the rules that
turn an exception of an SMTP conversation into one (see ``classify``)."""

from __future__ import annotations

import enum
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosmtplib

if TYPE_CHECKING:
    from wiremesh.server.mail.transport import ResolvedSMTP

logger = logging.getLogger("wiremesh.mail")

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


class StartTlsMissing(aiosmtplib.SMTPException):
    """The server's EHLO does not offer STARTTLS, though the settings ask for it."""


class StartTlsRequired(aiosmtplib.SMTPException):
    """The server offers AUTH only after STARTTLS, and the settings send in plain text."""


class NoLoginMechanism(aiosmtplib.SMTPException):
    """Credentials are configured but the server offers no AUTH mechanism we speak."""


def clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 3] + "..."


def server_name(config: ResolvedSMTP) -> str:
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
    server = server_name(config)
    chain = _cause_chain(exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 530:
        if "TLS" in exc.message.upper():
            return DeliveryReport(
                Outcome.TLS_FAILED,
                clip(f"{server} requires TLS first (set use_tls): {exc.code} {exc.message}"),
                exc.code,
            )
        return DeliveryReport(
            Outcome.AUTH_FAILED,
            clip(f"{server} requires authentication: {exc.code} {exc.message}"),
            exc.code,
            permanent=True,
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or (
        stage == "auth" and isinstance(exc, aiosmtplib.SMTPResponseException)
    ):
        assert isinstance(exc, aiosmtplib.SMTPResponseException)
        return DeliveryReport(
            Outcome.AUTH_FAILED,
            clip(f"authentication failed at {server}: {exc.code} {exc.message}"),
            exc.code,
            permanent=exc.code >= 500,
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        code = refused.code if refused is not None else None
        detail = f"{refused.code} {refused.message}" if refused is not None else str(exc)
        return DeliveryReport(
            Outcome.REJECTED if code is None or code >= 500 else Outcome.DEFERRED,
            clip(f"{server} refused the recipient: {detail}"),
            code,
            permanent=code is None or code >= 500,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException) and stage != "greeting":
        permanent = exc.code >= 500
        verb = "rejected the mail" if permanent else "deferred the mail"
        return DeliveryReport(
            Outcome.REJECTED if permanent else Outcome.DEFERRED,
            clip(f"{server} {verb}: {exc.code} {exc.message}"),
            exc.code,
            permanent=permanent,
        )
    if any(isinstance(item, ssl.SSLError) for item in chain):
        reason = next(item for item in chain if isinstance(item, ssl.SSLError))
        return DeliveryReport(
            Outcome.TLS_FAILED, clip(f"TLS with {server} failed: {_ssl_reason(reason)}")
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
        return DeliveryReport(Outcome.AUTH_FAILED, clip(f"{server} {exc}"), permanent=True)
    if any(isinstance(item, TimeoutError) for item in chain):
        return DeliveryReport(Outcome.TIMEOUT, clip(f"{server} timed out ({stage}): {exc}"))
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return DeliveryReport(
            Outcome.CONNECTION_REFUSED, f"{server} refused the connection (nothing listens there)"
        )
    if stage == "starttls" and isinstance(exc, aiosmtplib.SMTPException):
        return DeliveryReport(Outcome.TLS_FAILED, clip(f"STARTTLS with {server} failed: {exc}"))
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return DeliveryReport(
            Outcome.CONNECTION_FAILED, clip(f"the connection to {server} failed: {exc}")
        )
    return DeliveryReport(Outcome.ERROR, clip(f"sending through {server} failed: {exc!r}"))


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
        f"could not connect to {server_name(config)}, or it did not answer in time",
    )
