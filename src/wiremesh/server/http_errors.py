"""The web side of errors: the handlers that render every refusal in the one shape, and the
OpenAPI document's list of the refusals each route can give."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from wiremesh.server.errors import (
    AUTH_FAILURE_CODES,
    MAX_ERROR_DETAILS,
    ApiError,
    ErrorBody,
    error_body,
)
from wiremesh.server.ratelimit import too_many_failures

_HTTP_CODES = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


MAX_SUMMARY_PROBLEMS = 3
MAX_FIELD_CHARS = 64
"""A field's name comes from the client (an unknown key): only its start is repeated."""
MAX_MESSAGE_CHARS = 200


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _detail(error: Any) -> dict[str, str]:
    field = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return {
        "field": _clip(field, MAX_FIELD_CHARS),
        "message": _clip(str(error.get("msg", "invalid")), MAX_MESSAGE_CHARS),
        "type": _clip(str(error.get("type", "invalid")), MAX_FIELD_CHARS),
    }


def _summary(details: list[dict[str, str]], total: int) -> str:
    """The first few problems in words, and how many there are in all."""
    if not details:
        return "invalid request"
    summary = "; ".join(
        f"{d['field'] or 'body'}: {d['message']}" for d in details[:MAX_SUMMARY_PROBLEMS]
    )
    if total > MAX_SUMMARY_PROBLEMS:
        summary += f" (and {total - MAX_SUMMARY_PROBLEMS} more; {total} problems in all)"
    return summary


def install_error_handlers(app: FastAPI) -> None:
    """Render every refusal in the one shape; never leak a stack trace."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.code in AUTH_FAILURE_CODES:
            throttle = getattr(request.app.state, "auth_throttle", None)
            wait = throttle.failed(request.scope, exc.code) if throttle is not None else None
            if wait is not None:
                return JSONResponse(
                    error_body("too_many_failures", too_many_failures(wait)),
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                )
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return JSONResponse(
                error_body("malformed_json", "the request body is not valid JSON"), status_code=400
            )
        details = [_detail(error) for error in errors[:MAX_ERROR_DETAILS]]
        return JSONResponse(
            error_body("validation_error", _summary(details, len(errors)), details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("internal_error", "the server failed; the error was logged"),
            status_code=500,
        )


# --- the OpenAPI document: which refusals each route can give ------------------------------


ERROR_DESCRIPTIONS = {
    400: "`malformed_json`: the body is not valid JSON",
    401: "`unauthenticated` (no credential) or a credential that is not accepted",
    403: "`forbidden`: the caller may not do this",
    404: "`not_found`: the resource does not exist, or is not the caller's to see",
    409: "A conflict with the current state (the code says which)",
    410: "Gone: the resource expired or was revoked (the code says which)",
    413: "`payload_too_large`: the body is over the server's limit",
    415: "`unsupported_media_type`: the body is not JSON",
    422: "`validation_error` (the details list the problems) or a refused value",
    429: "`too_many_failures`: too many failed authentications from this address",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route (or router) that can refuse with these statuses."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        response: dict[str, Any] = {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        if status in _ERROR_HEADERS:
            response["headers"] = _ERROR_HEADERS[status]
        responses[status] = response
    return responses


_DEPENDENCY_ERRORS: dict[Callable[..., Any], frozenset[int]] = {}

CallableT = TypeVar("CallableT", bound=Callable[..., Any])


def refuses(*statuses: int) -> Callable[[CallableT], CallableT]:
    """Mark a dependency as one that can refuse with ``statuses``: every route that depends on
    it, directly or through another dependency, documents them (``document_error_responses``)."""

    def mark(dependency: CallableT) -> CallableT:
        _DEPENDENCY_ERRORS[dependency] = frozenset(statuses)
        return dependency

    return mark


def _dependants(dependant: Dependant) -> list[Dependant]:
    """The dependant and every dependency below it."""
    return [dependant, *(found for sub in dependant.dependencies for found in _dependants(sub))]


def route_error_statuses(route: APIRoute) -> set[int]:
    """The refusals an API route can give whatever its endpoint does: those of its
    dependencies, 422 for a parameter or body that does not validate, 404 for a path that
    names nothing, 400/413 for a body, and 429 (failed authentications are throttled)."""
    statuses = {429}
    for dependant in _dependants(route.dependant):
        if dependant.call is not None:
            statuses |= _DEPENDENCY_ERRORS.get(dependant.call, frozenset())
        if dependant.body_params:
            statuses |= {400, 413, 422}
        if dependant.query_params or dependant.header_params or dependant.path_params:
            statuses.add(422)
        if dependant.path_params:
            statuses.add(404)
    return statuses


def _api_routes(router: APIRouter) -> Iterator[APIRoute]:
    for route in router.routes:
        if isinstance(route, APIRoute):
            yield route
        # A router included in this one (FastAPI >= 0.16x keeps it, and builds its routes
        # lazily from the originals).
        included = getattr(route, "original_router", None)
        if isinstance(included, APIRouter):
            yield from _api_routes(included)


def document_error_responses(router: APIRouter) -> None:
    """Add the error responses of every route of an API router to the OpenAPI document, in the
    one error shape (a route's own ``responses=`` win). Call before the app includes it."""
    for route in _api_routes(router):
        route.responses = {**error_responses(*route_error_statuses(route)), **route.responses}
