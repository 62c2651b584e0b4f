"""Users: request and response bodies, and the input rules the CLI shares with the API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# The shared input rules live in wiremesh.server.validation; importable from here as before.
from wiremesh.server.validation import MAX_DB_ID as MAX_DB_ID
from wiremesh.server.validation import DbId as DbId
from wiremesh.server.validation import Email as Email
from wiremesh.server.validation import PersonName as PersonName
from wiremesh.server.validation import no_control_characters as no_control_characters
from wiremesh.server.validation import parse_input as parse_input


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email = Field(description="Unique, compared without regard to letter case")
    name: PersonName = Field(description="Display name, 1 to 128 characters")
    is_server_admin: bool = Field(default=False, description="Administers the whole server")


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    is_server_admin: bool
    is_active: bool
    created_at: datetime


_EMAIL_ADAPTER = TypeAdapter(Email)
_LOCAL_EMAIL_RE = re.compile(r"[a-z0-9._+-]{1,64}@localhost")


def email_or_local(value: str) -> str:
    """A normal address, or one at ``localhost`` (the default bootstrap administrator's)."""
    text = value.strip().lower()
    if _LOCAL_EMAIL_RE.fullmatch(text):
        return text
    try:
        return _EMAIL_ADAPTER.validate_python(text)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None


class BootstrapAdmin(BaseModel):
    """The first server administrator; unlike other users it may have a ``@localhost`` address."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(max_length=320), AfterValidator(email_or_local)]
    name: PersonName
