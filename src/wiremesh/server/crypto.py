"""Secrets stored encrypted at rest (SMTP passwords): Fernet keys, newest first.

Where the keys come from, in order:

1. ``Settings.secret_keys`` (``WIREMESH_SECRET_KEYS='["new", "old"]'``): the first key encrypts,
   every key decrypts.
2. ``Settings.secret_key_file``: a file with one key per line, newest first (``#`` comments and
   blank lines are ignored). It must exist.
3. Neither: ``<data_dir>/secret.key``, created (mode 0600) the first time a secret is encrypted,
   but never while the database holds secrets encrypted before: those were encrypted with a
   key that is now missing, and a new key would silently make them unreadable
   (``SecretKeyMissing`` says how to restore the file or start over).

A value that no configured key decrypts is refused with ``secret_key_mismatch``: the server
never sends a garbled password to an SMTP server.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from wiremesh.server.config import Settings
from wiremesh.server.errors import ApiError
from wiremesh.server.files import private_directory

logger = logging.getLogger("wiremesh.server.crypto")

DEFAULT_KEY_FILE_NAME = "secret.key"


class SecretKeyMismatch(ApiError):
    """No configured key decrypts a stored secret, or no key is configured at all."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "secret_key_mismatch", message)


class SecretKeyInvalid(ApiError):
    """A configured key is not a Fernet key, or the key file cannot be read."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "secret_key_invalid", message)


class SecretKeyMissing(ApiError):
    """The key file is gone while the database holds secrets encrypted with its key."""

    def __init__(self, path: Path, stored: int) -> None:
        super().__init__(409, "secret_key_missing", missing_key_message(path, stored))


def missing_key_message(path: Path, stored: int) -> str:
    return (
        f"the key file {path} does not exist, but the database holds {stored} secret(s) "
        "encrypted with a key; no new key is made, since it could not decrypt them. Restore "
        "the key file from your backup (or point WIREMESH_SECRET_KEY_FILE or "
        "WIREMESH_SECRET_KEYS at the keys). If the key is lost for good, `wiremesh secrets "
        "add-key --discard-lost-secrets` makes a new key and clears the passwords no key "
        "decrypts (their SMTP settings are paused until a password is set again)"
    )


def generate_key() -> str:
    """A new random Fernet key (32 bytes, url-safe base64)."""
    return Fernet.generate_key().decode("ascii")


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where the keys come from; ``path`` is the key file, None when they are in the settings."""

    description: str
    path: Path | None
    is_default_file: bool


def key_source(settings: Settings) -> KeySource:
    if settings.secret_keys:
        return KeySource("the secret_keys setting (WIREMESH_SECRET_KEYS)", None, False)
    if settings.secret_key_file is not None:
        return KeySource(
            f"the key file {settings.secret_key_file}", settings.secret_key_file, False
        )
    path = settings.data_dir / DEFAULT_KEY_FILE_NAME
    return KeySource(f"the key file {path}", path, True)


def parse_key_file(content: str) -> list[str]:
    """The keys of a key file: one a line, newest first; blank lines and ``#`` comments skipped."""
    keys: list[str] = []
    for line in content.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keys.append(stripped)
    return keys


def read_key_file(path: Path) -> list[str]:
    try:
        content = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise SecretKeyMismatch(
            f"the key file {path} does not exist, so stored secrets cannot be decrypted; "
            "restore it from your backup (`wiremesh secrets --help` says what else can be done)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyInvalid(f"the key file {path} cannot be read: {exc}") from None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("the key file %s is readable by other users; chmod 600 it", path)
    keys = parse_key_file(content)
    if not keys:
        raise SecretKeyMismatch(f"the key file {path} holds no key")
    return keys


def write_key_file(path: Path, keys: Sequence[str]) -> None:
    """Replace a key file atomically, readable by its owner only."""
    private_directory(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("# wiremesh secret keys: one Fernet key a line, newest first\n")
        handle.writelines(f"{key}\n" for key in keys)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _create_default_key_file(path: Path) -> list[str]:
    """Create the embedded default key file once; a concurrent creator's file wins."""
    private_directory(path.parent)
    key = generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key_file(path)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("# wiremesh secret keys: one Fernet key a line, newest first\n")
        handle.write(f"{key}\n")
        handle.flush()
        os.fsync(handle.fileno())
    logger.info("created the secret key file %s; back it up with the database", path)
    return [key]


def configured_keys(settings: Settings, *, create: bool = False, stored: int = 0) -> list[str]:
    """The keys, newest first. ``create`` makes the default key file when it is missing and
    no secret is ``stored`` in the database yet."""
    source = key_source(settings)
    if source.path is None:
        return list(settings.secret_keys)
    if source.is_default_file and create and not source.path.exists():
        if stored:
            raise SecretKeyMissing(source.path, stored)
        return _create_default_key_file(source.path)
    return read_key_file(source.path)


class SecretBox:
    """Encrypts with the newest key; decrypts with any of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyMismatch("no secret key is configured")
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip().encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise SecretKeyInvalid(
                    f"secret key #{position} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes; make one with `wiremesh secrets "
                    "generate-key`)"
                ) from None
        self._newest = fernets[0]
        self._all = MultiFernet(fernets)
        self.key_count = len(fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._all.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._all.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretKeyMismatch(
                "a stored secret cannot be decrypted with the configured keys; "
                "restore the key it was encrypted with, or set the secret again"
            ) from None

    def rotate(self, token: str) -> str:
        """The same secret, encrypted anew with the newest key."""
        try:
            return self._all.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise SecretKeyMismatch(
                "a stored secret cannot be decrypted with the configured keys"
            ) from None

    def newest_key_decrypts(self, token: str) -> bool:
        """Whether the newest key alone decrypts ``token`` (it is safe to drop the others)."""
        try:
            self._newest.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True


def secret_box(settings: Settings, *, for_encrypting: bool = False, stored: int = 0) -> SecretBox:
    """The box for the configured keys; the default key file is made only to encrypt, and
    only while no secret is ``stored`` (see ``configured_keys``)."""
    return SecretBox(configured_keys(settings, create=for_encrypting, stored=stored))


def missing_key_file(settings: Settings) -> Path | None:
    """The key file the keys should come from, when it does not exist."""
    source = key_source(settings)
    return source.path if source.path is not None and not source.path.exists() else None
