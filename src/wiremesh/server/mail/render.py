"""The mails the system sends: a subject, plain text and HTML from Jinja2 templates.

Each mail ``name`` has ``templates/<name>.subject.txt``, ``<name>.txt`` and ``<name>.html``.
HTML is autoescaped; plain text and subjects are not (they are not markup). A subject is
one line whatever the values put into it, so no value can add a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

MAX_SUBJECT_LENGTH = 500


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("wiremesh.server.mail", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render(name: str, **context: Any) -> RenderedMail:
    environment = _environment()
    subject_source = environment.get_template(f"{name}.subject.txt").render(**context)
    subject = " ".join(subject_source.split())[:MAX_SUBJECT_LENGTH]
    text = environment.get_template(f"{name}.txt").render(subject=subject, **context)
    html = environment.get_template(f"{name}.html").render(subject=subject, **context)
    return RenderedMail(subject=subject, text=text, html=html)


def format_time(value: datetime) -> str:
    """A timestamp as mails show it: UTC, to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(value: timedelta) -> str:
    """``2 h 5 min``, ``45 s``: a duration for people."""
    seconds = max(0, int(value.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [
        f"{amount} {unit}"
        for amount, unit in ((days, "d"), (hours, "h"), (minutes, "min"))
        if amount
    ]
    if seconds and not days:
        parts.append(f"{seconds} s")
    return " ".join(parts) or "0 s"
