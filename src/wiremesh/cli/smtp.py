"""`wiremesh smtp`: the SMTP configuration of an organization, or the global one (as the operator).

Without ``--org`` the commands act on the global configuration, which every organization
without an active configuration of its own uses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

import typer

from wiremesh.cli._common import (
    JsonOption,
    cli_settings,
    emit,
    fail,
    operator_scope,
    run,
    unit_of_work,
)
from wiremesh.server.mail import pausing, repository, service
from wiremesh.server.mail.schemas import MailTestIn, MailTestOut, SMTPSettingsOut
from wiremesh.server.mail.service import SMTPSettingsInput, TlsModeChoice, tls_mode_choice
from wiremesh.server.mail.testmail import send_test_mail
from wiremesh.server.mail.transport import SmtpTransport
from wiremesh.server.users.schemas import parse_input

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "SMTP settings: one per organization, plus a global one used by every organization "
        "without an active configuration of its own. The password is stored encrypted and "
        "never shown."
    ),
)

OrgOption = typer.Option(
    None, "--org", help="Organization id or name; without it, the global configuration"
)
_TLS_MODES: dict[str, TlsModeChoice] = {
    "auto": "auto",
    "starttls": "starttls",
    "implicit": "implicit",
}
T = TypeVar("T")


def _pick(given: T | None, current: T) -> T:
    """An option given on the command line wins over the stored value."""
    return current if given is None else given


def settings_row(out: SMTPSettingsOut) -> dict[str, Any]:
    data = out.model_dump(mode="json")
    if data.get("ca_certificate"):
        data["ca_certificate"] = "(set)"
    return data


def _read_password() -> str:
    if sys.stdin.isatty():
        typer.echo("SMTP password (then Enter, Ctrl-D):", err=True)
    password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not password:
        fail("--password-stdin read an empty password")
    return password


@app.command("set")
def set_settings(
    org: str | None = OrgOption,
    server: str | None = typer.Option(None, "--server", help="SMTP host name or IP address"),
    port: int | None = typer.Option(None, "--port", help="1 to 65535 (default 587)"),
    username: str | None = typer.Option(
        None, "--username", help="Login name; an empty string removes it (and needs no password)"
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input"
    ),
    clear_password: bool = typer.Option(False, "--clear-password", help="Remove the password"),
    from_email: str | None = typer.Option(None, "--from", help="Sender address of every mail"),
    from_name: str | None = typer.Option(
        None, "--from-name", help='Display name in From ("Example Ops"); "" removes it'
    ),
    tls: bool | None = typer.Option(
        None, "--tls/--no-tls", help="Secure the connection (default) or send in plain text"
    ),
    tls_mode: str | None = typer.Option(
        None,
        "--tls-mode",
        help="auto (implicit TLS on port 465, STARTTLS otherwise), starttls or implicit",
    ),
    verify: bool | None = typer.Option(
        None,
        "--verify-certificate/--no-verify-certificate",
        help="Verify the server's certificate (default); turn off only for a self-signed relay",
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="PEM file of a CA to trust for this server", dir_okay=False
    ),
    no_ca: bool = typer.Option(False, "--no-ca", help="Forget the trusted CA certificate"),
    active: bool | None = typer.Option(
        None, "--active/--inactive", help="Whether mail goes through this configuration"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create or change a configuration; options not given keep their current value."""
    settings = cli_settings()
    if tls_mode is not None and tls_mode not in _TLS_MODES:
        fail(f"--tls-mode must be one of {', '.join(_TLS_MODES)}")
    password = _read_password() if password_stdin else None
    ca_certificate: str | None = None
    if ca_file is not None:
        try:
            ca_certificate = ca_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {ca_file}: {exc}")

    async def work() -> dict[str, Any]:
        async with unit_of_work(settings) as session:
            scope = await operator_scope(session, org)
            current = await repository.get_settings(session, scope)
            if current is None and (server is None or from_email is None):
                fail("a new configuration needs at least --server and --from")
            use_tls = tls if tls is not None else (current.use_tls if current else True)
            if tls_mode is not None:
                mode = _TLS_MODES[tls_mode]
            elif current is not None and use_tls:
                mode = tls_mode_choice(current)
            else:
                mode = "auto"
            ca = ca_certificate
            if ca is None and current is not None and not no_ca:
                ca = current.ca_certificate
            data = SMTPSettingsInput(
                smtp_server=_pick(server, current.smtp_server if current else ""),
                smtp_port=_pick(port, current.smtp_port if current else 587),
                from_email=_pick(from_email, current.from_email if current else ""),
                smtp_username=_pick(username, current.smtp_username if current else None),
                smtp_password=password,
                clear_password=clear_password,
                use_tls=use_tls,
                tls_mode=mode,
                verify_certificate=_pick(verify, current.verify_certificate if current else True),
                ca_certificate=ca,
                is_active=_pick(active, current.is_active if current else True),
                from_name=_pick(from_name, current.from_name if current else None),
            )
            row, _created = await service.put_settings(session, settings, scope, data)
            return settings_row(SMTPSettingsOut.of(row))

    emit(run(work), as_json)


@app.command("show")
def show(org: str | None = OrgOption, as_json: bool = JsonOption) -> None:
    """Show a configuration (the password only as set or not)."""

    async def work() -> dict[str, Any]:
        async with unit_of_work() as session:
            scope = await operator_scope(session, org)
            return settings_row(SMTPSettingsOut.of(await service.get_settings(session, scope)))

    emit(run(work), as_json)


@app.command("resume")
def resume(org: str | None = OrgOption, as_json: bool = JsonOption) -> None:
    """End a pause (the relay refused the login) without changing the settings, once the
    relay's side is fixed; `smtp set` ends it too."""

    async def work() -> dict[str, Any]:
        async with unit_of_work() as session:
            scope = await operator_scope(session, org)
            return settings_row(SMTPSettingsOut.of(await pausing.resume(session, scope)))

    emit(run(work), as_json)


@app.command("delete")
def delete(org: str | None = OrgOption) -> None:
    """Delete a configuration; the organization's mail then goes through the global one."""

    async def work() -> None:
        async with unit_of_work() as session:
            await service.delete_settings(session, await operator_scope(session, org))

    run(work)
    typer.echo("Deleted the " + (f"SMTP settings of {org}." if org else "global SMTP settings."))


@app.command("test")
def send_test(
    org: str | None = OrgOption,
    to: str = typer.Option(..., "--to", help="Where to send the test mail"),
    timeout: float = typer.Option(30.0, "--timeout", min=1, max=300, help="Seconds per step"),
    as_json: bool = JsonOption,
) -> None:
    """Send a test mail the way the organization's mail goes, and print the server's answer.

    The configuration is the one the organization uses (its own active one, else the global
    one). Exit status 1 when the mail was not delivered.
    """
    settings = cli_settings()
    transport = SmtpTransport(timeout=timeout)

    async def work() -> MailTestOut:
        address = parse_input(MailTestIn, to=to).to
        async with unit_of_work(settings) as session:
            scope = await operator_scope(session, org)
            return await send_test_mail(session, settings, transport, scope, address)

    result = run(work)
    if as_json:
        emit(result.model_dump(mode="json"), True)
    else:
        via = f"{result.smtp_server}:{result.smtp_port} ({result.tls}, {result.scope} settings)"
        typer.echo(f"{result.outcome}: {result.message}")
        typer.echo(f"via {via}; mail id {result.mail_id}")
    if not result.delivered:
        raise typer.Exit(1)
