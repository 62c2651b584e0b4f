"""One error shape for every refusal: HTTP status, machine-readable code, human message.

Plain Python and pydantic: services raise these without loading the web framework. How an
error becomes an HTTP answer, and how the OpenAPI document lists them, is in
:mod:`wiremesh.server.http_errors`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ApiError(Exception):
    """A refusal the client can act on; raised by services, rendered by the app."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after  # seconds, sent as ``Retry-After`` (429, 503)


class NotFound(ApiError):
    def __init__(self, what: str) -> None:
        super().__init__(404, "not_found", f"{what} not found")


class Forbidden(ApiError):
    def __init__(self, message: str = "you may not do this") -> None:
        super().__init__(403, "forbidden", message)


class Conflict(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(409, code, message)


class Invalid(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(422, code, message)


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


AUTH_FAILURE_CODES = frozenset(
    {
        "invalid_token",
        "invalid_credential",
        "invalid_setup_key",
        "invalid_invitation",
        "bad_relay_token",
        "invalid_metrics_token",
    }
)
"""Refusals of a credential the client presented: each counts against the client's
failed-authentication budget (see ``wiremesh.server.ratelimit``). A request with no
credential at all (``unauthenticated``) tried nothing and is not counted."""


MAX_ERROR_DETAILS = 20
"""A validation error lists at most this many problems: a body with 900,000 unknown keys once
answered 116 MB naming every one of them."""


class ErrorDetail(BaseModel):
    """One problem of an invalid request."""

    field: str = Field(description="Dotted path of the offending field; empty for the body")
    message: str
    type: str = Field(description="Machine-readable kind of problem, e.g. `missing`")


class ErrorInfo(BaseModel):
    code: str = Field(description="Machine-readable reason, e.g. `not_found`, `validation_error`")
    message: str = Field(description="Human-readable explanation")
    details: list[ErrorDetail] | None = Field(
        default=None, description=f"`validation_error` only: the first {MAX_ERROR_DETAILS} problems"
    )


class ErrorBody(BaseModel):
    """Every refusal (4xx) and failure (5xx) of the API has this body."""

    error: ErrorInfo
