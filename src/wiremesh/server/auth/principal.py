"""Who is calling. A plain value, so services take it without knowing about HTTP."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user, through one API token."""

    user_id: int
    is_server_admin: bool
    token_id: int


def operator_principal() -> Principal:
    """The operator at the server's console (the CLI): a server administrator with no user row."""
    return Principal(user_id=0, is_server_admin=True, token_id=0)
