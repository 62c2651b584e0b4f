"""Refusals as pages: a person's browser gets HTML, with the status the API would answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wiremesh.protocol.urls import API_PREFIX
from wiremesh.server.errors import ApiError
from wiremesh.server.web.templating import render_page


class PageRefusal(Exception):
    """A page that must not be shown (or a form that must not act): status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page, and back afterwards."""


@contextmanager
def as_page_refusal() -> Iterator[None]:
    """A service's ``ApiError`` becomes the same status, rendered as a page."""
    try:
        yield
    except ApiError as exc:
        raise PageRefusal(exc.status, exc.message) from None


def install_page_errors(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageRefusal)
        return render_page(
            request,
            "error.html",
            {"status": exc.status, "message": exc.message},
            status=exc.status,
        )

    async def sign_in(request: Request, exc: Exception) -> Response:
        target = request.url.path
        if request.url.query:
            target += f"?{request.url.query}"
        if request.method != "GET" or target.endswith("/stream"):
            target = "/"
        return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)

    app.add_exception_handler(PageRefusal, refused)
    app.add_exception_handler(SignInRequired, sign_in)
    _pages_for_people(app, RequestValidationError, 422, "The form has a value that is not valid.")
    _pages_for_people(app, StarletteHTTPException, None, "There is no such page.")


def _pages_for_people(
    app: FastAPI, kind: type[Exception], status: int | None, message: str
) -> None:
    """Outside the API, a malformed form or an unknown path is a page too; the API keeps
    its JSON error body (the handler installed before is called for it)."""
    api_handler = app.exception_handlers[kind]

    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(API_PREFIX):
            answer: Response = await api_handler(request, exc)  # type: ignore[misc]
            return answer
        code = status if status is not None else getattr(exc, "status_code", 500)
        text = message if code in (404, 422) else str(getattr(exc, "detail", message))
        return render_page(request, "error.html", {"status": code, "message": text}, status=code)

    app.add_exception_handler(kind, handle)
