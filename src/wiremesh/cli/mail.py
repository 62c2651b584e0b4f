"""`wiremesh mail`: the outbox, every mail the server sends (as the operator)."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, emit, fail, operator_scope, run, unit_of_work
from wiremesh.server.mail import outbox
from wiremesh.server.mail.models import MailStatus
from wiremesh.server.mail.schemas import MailOut

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "The mail outbox: every mail is stored, then sent by the server with retries; "
        "failed mails stay listed with their last error."
    ),
)

STATUSES = [status.value for status in MailStatus]


def mail_row(row: MailOut) -> dict[str, Any]:
    data = row.model_dump(mode="json")
    data.pop("next_attempt_at" if row.status is not MailStatus.QUEUED else "sent_at", None)
    return data


@app.command("list")
def list_mail(
    org: str | None = typer.Option(None, "--org", help="Only this organization's mails"),
    status: str | None = typer.Option(
        None, "--status", help=f"Only mails in this state: {', '.join(STATUSES)}"
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="At most this many"),
    as_json: bool = JsonOption,
) -> None:
    """List mails, newest first."""
    if status is not None and status not in STATUSES:
        fail(f"--status must be one of {', '.join(STATUSES)}")

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            scope = await operator_scope(session, org)
            rows = await outbox.list_mail(session, scope, status=status, limit=limit)
            return [mail_row(MailOut.of(row)) for row in rows]

    emit(run(work), as_json)


@app.command("retry")
def retry(
    mail_id: int | None = typer.Argument(
        None, min=1, help="Id of one mail; without it, every mail of --org in --status"
    ),
    org: str | None = typer.Option(None, "--org", help="Only this organization's mails"),
    status: str = typer.Option(
        "failed",
        "--status",
        help="failed: queue them again from their first attempt; queued: send them now",
    ),
) -> None:
    """Send mails again now (after fixing the SMTP settings, say): one, or all of a status."""
    if status not in outbox.RETRYABLE:
        fail(f"--status must be one of {', '.join(outbox.RETRYABLE)}")

    async def work() -> int:
        async with unit_of_work() as session:
            scope = await operator_scope(session, org)
            if mail_id is not None:
                await outbox.retry_mail(session, scope, mail_id)
                return 1
            return await outbox.retry_all(session, scope, status)

    count = run(work)
    if mail_id is not None:
        typer.echo(f"Mail {mail_id} is queued again; the server sends it shortly.")
    else:
        typer.echo(f"{count} {status} mail(s) queued again; the server sends them shortly.")
