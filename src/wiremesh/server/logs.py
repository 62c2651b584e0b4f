"""One logging set-up for the server and its commands: every ``wiremesh.*`` logger and
uvicorn's, with time and level, as text for a terminal or one JSON object per line for a
log shipper (``WIREMESH_LOG_FORMAT=json``).

Secrets are kept out of log lines where they are written (no log call is handed a token,
password or key). As a second line of defence every record passes :class:`RedactSecrets`,
which blanks anything shaped like one of wiremesh's own credentials.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
from datetime import UTC, datetime
from typing import Any, Final

LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS: Final = ("text", "json")
TRACE = 5
"""uvicorn's extra level below debug."""

TEXT_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"

_SECRET_SHAPES = re.compile(
    # API tokens, setup keys, device credentials, invitation and relay tokens: a wiremesh
    # prefix and a long random tail.
    r"\b(wm[a-z]{0,3}_)[A-Za-z0-9_\-]{12,}"
)
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else came in through ``extra=`` and is kept.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """``text`` with every credential-shaped word replaced by its prefix and a marker."""
    return _SECRET_SHAPES.sub(lambda match: match.group(1) + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Blanks credential-shaped words in the message and in a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class QuietAlembic(logging.Filter):
    """Keeps Alembic's "Running upgrade/downgrade" lines, drops its chatter about itself
    ("Context impl SQLiteImpl.", "Will assume transactional DDL.") that every schema check
    would print."""

    CHATTER = ("Context impl ", "Will assume ")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("alembic.") and str(record.msg).startswith(self.CHATTER))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``exception`` when there is one, and the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRIBUTES or key.startswith("_") or key == "color_message":
                continue
            if isinstance(value, int | float | bool | None):
                entry[key] = value
            else:
                entry[key] = redact(str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def _level_number(level: str) -> int:
    name = level.lower()
    if name not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    number: int = TRACE if name == "trace" else logging.getLevelNamesMapping()[name.upper()]
    return number


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at set-up."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """The stream is always the current ``sys.stderr``."""


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for ``level`` and ``log_format`` ("text" or "json").

    One handler, on the root logger: ``wiremesh.*``, uvicorn's and Alembic's loggers
    propagate to it, and so do libraries' warnings.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    number = _level_number(level)
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {"format": TEXT_FORMAT, "datefmt": "%Y-%m-%dT%H:%M:%S%z"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}, "alembic": {"()": QuietAlembic}},
        "formatters": {"wiremesh": formatter},
        "handlers": {
            "wiremesh": {
                "()": StderrHandler,
                "formatter": "wiremesh",
                "filters": ["alembic", "redact"],
            }
        },
        "loggers": {
            "wiremesh": {"level": number, "handlers": [], "propagate": True},
            "alembic": {"level": number, "handlers": [], "propagate": True},
            "uvicorn": {"level": number, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": number, "handlers": [], "propagate": True},
            # uvicorn's access log: one line per request (uvicorn sets its level too).
            "uvicorn.access": {"level": number, "handlers": [], "propagate": True},
        },
        "root": {"handlers": ["wiremesh"], "level": logging.WARNING},
    }


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    """Install the set-up; called once at the start of ``wiremesh server`` and of commands."""
    logging.addLevelName(TRACE, "TRACE")
    logging.config.dictConfig(logging_config(level, log_format))
    logging.captureWarnings(True)
