"""Users: request and response bodies, and the input rules the CLI shares with the API."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from wiremesh.server.errors import Invalid

MAX_DB_ID = 2_147_483_647
"""The largest id a 32-bit integer column holds; larger ids are refused, never sent to SQL."""

ModelT = TypeVar("ModelT", bound=BaseModel)


def no_control_characters(value: str) -> str:
    """Refuse NUL, newlines and other control characters in one-line text (PostgreSQL: no NUL)."""
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


def lower_email(value: str) -> str:
    """One spelling per address, so uniqueness does not depend on letter case."""
    return value.lower()


Email = Annotated[EmailStr, Field(max_length=320), AfterValidator(lower_email)]
PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(no_control_characters),
]
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID)]


def parse_input(model: type[ModelT], **data: Any) -> ModelT:
    """Validate CLI input with the API's own model; a refusal is a 422 ``validation_error``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'input'}: {error['msg']}"
            for error in exc.errors()
        )
        raise Invalid("validation_error", problems) from None


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
