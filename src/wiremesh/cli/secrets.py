"""`wiremesh secrets`: the keys that encrypt stored secrets (SMTP passwords), and rotation."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, cli_settings, emit, fail, run, unit_of_work
from wiremesh.server.crypto import (
    SecretBox,
    configured_keys,
    generate_key,
    key_source,
    missing_key_message,
    read_key_file,
    write_key_file,
)
from wiremesh.server.mail import service as mail_service

ROTATION_FLOW = """
Rotating the key, with no moment when a secret cannot be read:

\b
1. Add a new key in front of the old one
   (the first key encrypts, every key decrypts):
   key file: `wiremesh secrets add-key`;
   WIREMESH_SECRET_KEYS: put a new key first, '["NEW", "OLD"]',
   on every replica (`wiremesh secrets generate-key` makes one),
   and restart them (a key file is re-read at each use).
2. `wiremesh secrets rotate` encrypts every secret again with the new key.
3. Drop the old key: `wiremesh secrets drop-old-keys` (key file; it checks
   that the new key decrypts everything), or remove it from
   WIREMESH_SECRET_KEYS and restart.

Back the keys up with the database: a secret whose key is lost cannot be
decrypted (the server reports secret_key_mismatch; set the password again).
"""

app = typer.Typer(
    no_args_is_help=True,
    help="Encryption keys of stored secrets (Fernet, newest first).\n" + ROTATION_FLOW,
)


@app.command("generate-key")
def generate() -> None:
    """Print a new random key (for WIREMESH_SECRET_KEYS or a key file)."""
    typer.echo(generate_key())


@app.command("status")
def status(as_json: bool = JsonOption) -> None:
    """Where the keys come from, and which key each stored secret is encrypted with."""
    settings = cli_settings()

    async def work() -> dict[str, Any]:
        box = SecretBox(configured_keys(settings))
        async with unit_of_work(settings) as session:
            usage = await mail_service.key_usage(session, box)
        return {
            "key_source": key_source(settings).description,
            "keys": box.key_count,
            "secrets_under_newest_key": usage.newest_key,
            "secrets_under_older_keys": usage.older_keys,
            "secrets_not_decryptable": len(usage.undecryptable_ids),
        }

    emit(run(work), as_json)


@app.command("add-key")
def add_key(
    discard_lost_secrets: bool = typer.Option(
        False,
        "--discard-lost-secrets",
        help=(
            "The key file is lost for good: make a new one anyway and clear the stored "
            "passwords no key decrypts (their SMTP settings are paused until a password is "
            "set again)"
        ),
    ),
) -> None:
    """Put a new key first in the key file; stored secrets keep decrypting with the old one."""
    settings = cli_settings()
    source = key_source(settings)
    if source.path is None:
        fail(
            "the keys come from WIREMESH_SECRET_KEYS: put a new key (`wiremesh secrets "
            "generate-key`) first in that list instead"
        )
    path = source.path

    async def work() -> tuple[list[str], int]:
        if path.exists():
            return read_key_file(path), 0
        async with unit_of_work(settings) as session:
            stored = len(await mail_service.settings_with_password(session))
            if stored and not discard_lost_secrets:
                fail(missing_key_message(path, stored))
            cleared = await mail_service.discard_lost_passwords(session) if stored else 0
        return [], cleared

    keys, cleared = run(work)
    write_key_file(path, [generate_key(), *keys])
    if cleared:
        typer.echo(
            f"Cleared {cleared} password(s) that no key decrypts; their SMTP settings are "
            "paused until a password is set again (`wiremesh smtp set ... --password-stdin`)."
        )
    typer.echo(
        f"Added a new key to {path} ({len(keys) + 1} keys); if replicas do not share this "
        "file, copy it to each. Then run `wiremesh secrets rotate`."
    )


@app.command(
    "rotate", help="Encrypt every stored secret again with the newest key.\n" + ROTATION_FLOW
)
def rotate() -> None:
    settings = cli_settings()

    async def work() -> int:
        box = SecretBox(configured_keys(settings))
        if box.key_count < 2:
            typer.echo(
                "note: only one key is configured; this re-encrypts with that same key. "
                "Add a new key first to rotate to it.",
                err=True,
            )
        async with unit_of_work(settings) as session:
            return await mail_service.rotate_passwords(session, box)

    count = run(work)
    typer.echo(
        f"Re-encrypted {count} secret(s) with the newest key. Once every replica runs with the "
        "new key list, the old key can be dropped."
    )


@app.command("drop-old-keys")
def drop_old_keys() -> None:
    """Keep only the newest key in the key file, after checking that it decrypts everything."""
    settings = cli_settings()
    source = key_source(settings)
    if source.path is None:
        fail("the keys come from WIREMESH_SECRET_KEYS: remove the old keys from that list")
    path = source.path

    async def work() -> int:
        keys = read_key_file(path)
        box = SecretBox(keys)
        async with unit_of_work(settings) as session:
            usage = await mail_service.key_usage(session, box)
        if usage.older_keys or usage.undecryptable_ids:
            fail(
                f"{usage.older_keys} secret(s) still need an older key and "
                f"{len(usage.undecryptable_ids)} decrypt with none: run `wiremesh secrets "
                "rotate` first"
            )
        write_key_file(path, keys[:1])
        return len(keys) - 1

    dropped = run(work)
    typer.echo(f"Dropped {dropped} old key(s) from {path}.")
