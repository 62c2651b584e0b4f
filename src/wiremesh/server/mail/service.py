"""SMTP settings: validation, storage (password encrypted), resolution at send time, test mail."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from cryptography import x509
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.config import Settings
from wiremesh.server.crypto import SecretBox, SecretKeyMismatch, secret_box
from wiremesh.server.db.base import utcnow
from wiremesh.server.errors import ApiError, Conflict, Invalid, NotFound
from wiremesh.server.mail import destinations, outbox, repository
from wiremesh.server.mail.models import (
    MailKind,
    MailOutbox,
    MailStatus,
    SMTPSettings,
    TlsMode,
    effective_tls,
)
from wiremesh.server.mail.render import render
from wiremesh.server.mail.transport import OutgoingMail, ResolvedSMTP
from wiremesh.server.orgs.models import Organization
from wiremesh.server.tenancy import OrgScope, TenantScope, owner_org_id

MAX_PASSWORD_LENGTH = 512
MAX_USERNAME_LENGTH = 255
MAX_CA_LENGTH = 64 * 1024
TlsModeChoice = Literal["auto", "starttls", "implicit"]
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class SmtpNotConfigured(ApiError):
    def __init__(self, org_id: int | None) -> None:
        where = "the server" if org_id is None else "this organization"
        super().__init__(
            409,
            "smtp_not_configured",
            f"no SMTP server is configured for {where}: neither an active configuration of its "
            "own nor an active global one",
        )


# --- validation ---------------------------------------------------------------------------------


def validate_host(value: str) -> str:
    host = value.strip()
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if not host or len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise Invalid(
            "invalid_smtp_server",
            f"{value!r} is not a host name or IP address (example: smtp.example.com)",
        )
    return host.removesuffix(".").lower()


def validate_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise Invalid("invalid_smtp_port", f"the SMTP port must be 1 to 65535, not {value}")
    return value


def validate_address(value: str, *, code: str, what: str) -> str:
    try:
        # Internal relays send from internal domains (.lan, .internal, ...): allow them.
        return validate_email(
            value.strip(), check_deliverability=False, globally_deliverable=False
        ).normalized
    except EmailNotValidError as exc:
        raise Invalid(code, f"{what} {value!r} is not an e-mail address: {exc}") from None


def validate_ca_certificate(value: str) -> str:
    pem = value.strip()
    if len(pem) > MAX_CA_LENGTH:
        raise Invalid("invalid_ca_certificate", "the CA certificate is larger than 64 KiB")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise Invalid(
            "invalid_ca_certificate",
            "the CA certificate is not PEM (-----BEGIN CERTIFICATE----- ...)",
        ) from None
    if not certificates:
        raise Invalid("invalid_ca_certificate", "the CA certificate holds no certificate")
    return pem + "\n"


MAX_FROM_NAME_LENGTH = 128


def validate_from_name(value: str | None) -> str | None:
    """A display name for From; blank means none. Encoded by the mail library, so any
    characters but control characters (which could break the header) are fine."""
    if value is None or not value.strip():
        return None
    name = " ".join(value.split())
    if len(name) > MAX_FROM_NAME_LENGTH:
        raise Invalid(
            "invalid_from_name", f"the From name is longer than {MAX_FROM_NAME_LENGTH} characters"
        )
    return _no_control_characters(name, code="invalid_from_name", what="the From name")


def _no_control_characters(value: str, *, code: str, what: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise Invalid(code, f"{what} must not contain control characters")
    return value


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SMTPSettingsInput:
    """One whole configuration; ``smtp_password`` None keeps the stored one."""

    smtp_server: str
    smtp_port: int
    from_email: str
    smtp_username: str | None = None
    smtp_password: str | None = None
    clear_password: bool = False
    use_tls: bool = True
    tls_mode: TlsModeChoice = "auto"
    verify_certificate: bool = True
    ca_certificate: str | None = None
    is_active: bool = True
    from_name: str | None = None


def tls_mode_choice(row: SMTPSettings) -> TlsModeChoice:
    if row.tls_mode == TlsMode.STARTTLS.value:
        return "starttls"
    if row.tls_mode == TlsMode.IMPLICIT.value:
        return "implicit"
    return "auto"


async def _org_name(session: AsyncSession, scope: TenantScope) -> str | None:
    """The name of the scope's org (404 when it does not exist); None in the server's scope."""
    if not isinstance(scope, OrgScope):
        return None
    org = await session.get(Organization, scope.org_id)
    if org is None:
        raise NotFound("organization")
    return org.name


async def get_settings(session: AsyncSession, scope: TenantScope) -> SMTPSettings:
    """The scope's own configuration: the org's, or the global one in the server's scope."""
    row = await repository.get_settings(session, scope)
    if row is None:
        own = isinstance(scope, OrgScope)
        raise NotFound("SMTP settings of this organization" if own else "global SMTP settings")
    return row


async def put_settings(
    session: AsyncSession, settings: Settings, scope: TenantScope, data: SMTPSettingsInput
) -> tuple[SMTPSettings, bool]:
    """Create or replace the scope's own configuration; True when it was created."""
    await _org_name(session, scope)
    host = validate_host(data.smtp_server)
    port = validate_port(data.smtp_port)
    if isinstance(scope, OrgScope) and not settings.smtp_allow_private_hosts:
        await destinations.check_on_save(host, port)
    from_email = validate_address(data.from_email, code="invalid_from_email", what="from address")
    username = data.smtp_username.strip() if data.smtp_username is not None else None
    if username is not None:
        if not username:
            username = None
        elif len(username) > MAX_USERNAME_LENGTH:
            raise Invalid("invalid_smtp_username", "the SMTP user name is longer than 255")
        else:
            _no_control_characters(username, code="invalid_smtp_username", what="the user name")
    if data.smtp_password is not None:
        if not data.smtp_password or len(data.smtp_password) > MAX_PASSWORD_LENGTH:
            raise Invalid(
                "invalid_smtp_password",
                f"the SMTP password must be 1 to {MAX_PASSWORD_LENGTH} characters",
            )
        _no_control_characters(data.smtp_password, code="invalid_smtp_password", what="it")
        if data.clear_password:
            raise Invalid("invalid_smtp_password", "give a new password or clear it, not both")
    if not data.use_tls and data.tls_mode != "auto":
        raise Invalid(
            "tls_mode_conflict",
            f"tls_mode {data.tls_mode!r} needs use_tls; without TLS leave it auto",
        )
    from_name = validate_from_name(data.from_name)
    ca_certificate = None
    if data.ca_certificate is not None and data.ca_certificate.strip():
        if not data.verify_certificate:
            raise Invalid(
                "ca_certificate_conflict",
                "a trusted CA certificate needs certificate verification; do not combine it "
                "with verify_certificate = false",
            )
        ca_certificate = validate_ca_certificate(data.ca_certificate)

    row = await repository.get_settings(session, scope)
    created = row is None
    if row is None:
        row = SMTPSettings(org_id=owner_org_id(scope))
    has_password = not data.clear_password and (
        data.smtp_password is not None or row.smtp_password is not None
    )
    if username is not None and not has_password:
        raise Invalid("password_required", "an SMTP user name needs a password (none is set)")
    if username is None and has_password:
        raise Invalid("username_required", "an SMTP password needs a user name")
    if data.clear_password:
        password_token = None
    elif data.smtp_password is not None:
        stored = len(await repository.settings_with_password(session))
        box = secret_box(settings, for_encrypting=True, stored=stored)
        password_token = box.encrypt(data.smtp_password)
    else:
        password_token = row.smtp_password

    row.smtp_server = host
    row.smtp_port = port
    row.smtp_username = username
    row.smtp_password = password_token
    row.from_email = from_email
    row.use_tls = data.use_tls
    row.tls_mode = None if data.tls_mode == "auto" else data.tls_mode
    row.verify_certificate = data.verify_certificate
    row.ca_certificate = ca_certificate
    row.is_active = data.is_active
    row.from_name = from_name
    # Saved settings are new settings: a pause after a refused login ends here.
    row.paused_at = None
    row.paused_reason = None
    row.updated_at = utcnow()
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(
            "smtp_settings_conflict", "the SMTP settings were changed at the same time; try again"
        ) from None
    return row, created


async def delete_settings(session: AsyncSession, scope: TenantScope) -> None:
    row = await get_settings(session, scope)
    await repository.delete_settings(session, row.id)


async def resolve(session: AsyncSession, settings: Settings, org_id: int | None) -> ResolvedSMTP:
    """The configuration a mail of ``org_id`` goes through now: the org's active one, else the
    active global one. Read at every send, so a change applies to the next mail."""
    row = await repository.resolve_settings(session, org_id)
    if row is None:
        raise SmtpNotConfigured(org_id)
    password = None
    if row.smtp_password is not None:
        password = secret_box(settings).decrypt(row.smtp_password)
    return ResolvedSMTP(
        settings_id=row.id,
        org_id=row.org_id,
        host=row.smtp_server,
        port=row.smtp_port,
        username=row.smtp_username,
        password=password,
        from_email=row.from_email,
        tls=effective_tls(row.use_tls, row.tls_mode, row.smtp_port),
        verify_certificate=row.verify_certificate,
        ca_certificate=row.ca_certificate,
        restrict_destination=row.org_id is not None and not settings.smtp_allow_private_hosts,
        from_name=row.from_name,
        settings_version=row.updated_at,
    )


# --- test mail ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedTestMail:
    mail_id: int
    config: ResolvedSMTP
    mail: OutgoingMail


TEST_MAIL_LEASE = timedelta(minutes=5)


async def prepare_test_mail(
    session: AsyncSession, settings: Settings, scope: TenantScope, to: str
) -> PreparedTestMail:
    """Store a test mail already claimed by this caller, with the config it will go through.

    The boundary commits, sends (no transaction open while talking to the SMTP server), then
    records the answer with ``outbox.record_report(..., retry=False)``: a test is a diagnosis,
    so it is not retried.
    """
    org_name = await _org_name(session, scope)
    org_id = owner_org_id(scope)
    config = await resolve(session, settings, org_id)
    rendered = render(
        "test",
        org_name=org_name,
        server=f"{config.host}:{config.port}",
        tls=config.tls.value,
        scope=config.scope,
        to=to,
    )
    now = utcnow()
    row = MailOutbox(
        org_id=org_id,
        kind=MailKind.TEST.value,
        to=to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        status=MailStatus.SENDING.value,
        attempts=1,
        next_attempt_at=now,
        claimed_until=now + TEST_MAIL_LEASE,
        claimed_by=settings.replica_id,
    )
    session.add(row)
    await session.flush()
    return PreparedTestMail(mail_id=row.id, config=config, mail=outbox.outgoing(row))


# --- key rotation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """How the stored passwords stand against the configured keys."""

    newest_key: int
    older_keys: int
    undecryptable_ids: list[int]


async def key_usage(session: AsyncSession, box: SecretBox) -> KeyUsage:
    newest = older = 0
    undecryptable: list[int] = []
    for row in await repository.settings_with_password(session):
        assert row.smtp_password is not None
        if box.newest_key_decrypts(row.smtp_password):
            newest += 1
            continue
        try:
            box.decrypt(row.smtp_password)
        except SecretKeyMismatch:
            undecryptable.append(row.id)
        else:
            older += 1
    return KeyUsage(newest, older, undecryptable)


async def rotate_passwords(session: AsyncSession, box: SecretBox) -> int:
    """Encrypt every stored password anew with the newest key; all or nothing."""
    rows = await repository.settings_with_password(session)
    failed: list[int] = []
    for row in rows:
        assert row.smtp_password is not None
        try:
            row.smtp_password = box.rotate(row.smtp_password)
        except SecretKeyMismatch:
            failed.append(row.id)
    if failed:
        raise SecretKeyMismatch(
            "no configured key decrypts the SMTP password of settings "
            f"{', '.join(map(str, failed))}; nothing was rotated. Put the old key back in the "
            "key list (after the new one), or set those passwords again"
        )
    await session.flush()
    return len(rows)


async def settings_with_password(session: AsyncSession) -> list[SMTPSettings]:
    return list(await repository.settings_with_password(session))


LOST_KEY_REASON = "the key that encrypted the SMTP password was lost: set the password again"


async def discard_lost_passwords(session: AsyncSession) -> int:
    """After the key was lost for good: clear every stored password (none can be decrypted)
    and pause its settings until a password is set again (saving the settings resumes)."""
    rows = await repository.settings_with_password(session)
    now = utcnow()
    for row in rows:
        row.smtp_password = None
        row.paused_at = now
        row.paused_reason = LOST_KEY_REASON
    await session.flush()
    return len(rows)
