"""The input rules every request field follows, shared by the API schemas and the CLI.

One place decides what a name, an id or a secret may be, so that PostgreSQL and SQLite see
the same values: SQLite stores any length in a ``VARCHAR(64)`` and any integer in an
``INTEGER``, PostgreSQL refuses both (and NUL in any text) with a 500 if they get that far.
Bad input is refused here, as a 422 ``validation_error``, before any SQL runs.

The CLI builds the same schema objects with :func:`parse_input`, so a command and an
endpoint refuse the same input with the same words.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
)

from wiremesh.server.errors import Invalid

MAX_DB_ID = 2_147_483_647
"""The largest id a 32-bit integer column holds; larger ids are refused, never sent to SQL."""
MAX_INT32 = MAX_DB_ID
"""Counters and limits stored in ``INTEGER`` columns stay within this."""

ModelT = TypeVar("ModelT", bound=BaseModel)


def no_control_characters(value: str) -> str:
    """Refuse NUL, newlines and other control characters in one-line text (PostgreSQL: no NUL)."""
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters (such as NUL or a newline)")
    return value


DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID)]
"""A row id of an ``INTEGER`` primary key."""

ShortName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(no_control_characters),
]
"""A label on one line, 1 to 64 characters after trimming: setup keys, API tokens."""

PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(no_control_characters),
]
"""A person's display name, 1 to 128 characters on one line."""

Secret = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(no_control_characters)
]
"""A credential the client presents (setup key, invitation token): printable, bounded."""


def lower_email(value: str) -> str:
    """One spelling per address, so uniqueness does not depend on letter case."""
    return value.lower()


Email = Annotated[EmailStr, Field(max_length=320), AfterValidator(lower_email)]
"""An e-mail address, lowercased (EmailStr already refuses control characters)."""

_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$")


def _check_hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError(
            "a hostname is 1-63 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


Hostname = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(_check_hostname)]
"""A device's name."""


def check_wireguard_key(value: str) -> str:
    """A WireGuard key is 32 bytes in standard base64 (44 characters)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a WireGuard key: expected 32 bytes in base64") from None
    if len(raw) != 32 or len(value) != 44:
        raise ValueError("not a WireGuard key: expected 32 bytes in base64")
    return value


WireGuardKey = Annotated[
    str, Field(min_length=44, max_length=44), AfterValidator(check_wireguard_key)
]

ORG_NAME_RE = re.compile(r"[a-z](?:[a-z0-9-]{0,62}[a-z0-9])?")
ORG_NAME_RULE = (
    "an organization name is 1 to 64 lowercase letters, digits and hyphens, "
    "starting with a letter and not ending with a hyphen"
)


def _trim_and_lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def check_org_name(value: str) -> str:
    if not ORG_NAME_RE.fullmatch(value):
        raise ValueError(ORG_NAME_RULE)
    return value


OrgName = Annotated[
    str,
    BeforeValidator(_trim_and_lower),
    Field(min_length=1, max_length=64, description=ORG_NAME_RULE, examples=["acme"]),
    AfterValidator(check_org_name),
]


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """A short sentence naming the first ``limit`` problems (and how many more there are)."""
    errors = exc.errors()
    shown = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])[:64] or 'input'}: {error['msg']}"
        for error in errors[:limit]
    )
    if len(errors) > limit:
        shown += f"; and {len(errors) - limit} more"
    return shown


def parse_input(model: type[ModelT], **data: Any) -> ModelT:
    """Validate CLI input with the API's own model; a refusal is a 422 ``validation_error``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("validation_error", describe_errors(exc)) from None
