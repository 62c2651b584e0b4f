"""Tenant scope: whose rows a caller acts on, decided once, by authorization.

An organization's scope (``OrgScope``) sees and owns one org's rows. The server's scope
(``ServerScope``: server administrators, and the operator at the console) sees every org's
rows and owns the server-wide ones: the global SMTP settings, mail sent on no org's behalf.

Only authorization builds a scope: the dependencies in ``wiremesh.server.orgs.deps`` for HTTP,
the CLI for the operator. Services pass it on, and repositories apply it with ``visible_to``
and ``owned_by``, so no code reads an optional ``org_id`` to guess what "none" means.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import InstrumentedAttribute


@dataclass(frozen=True, slots=True)
class OrgScope:
    """One organization's rows."""

    org_id: int


@dataclass(frozen=True, slots=True)
class ServerScope:
    """Every organization's rows, and the server's own."""


TenantScope = OrgScope | ServerScope
SERVER_SCOPE = ServerScope()


def visible_to(
    scope: TenantScope, org_column: InstrumentedAttribute[int | None]
) -> ColumnElement[bool]:
    """The rows the scope may see: its org's, or every org's."""
    if isinstance(scope, OrgScope):
        return org_column == scope.org_id
    return true()


def owned_by(
    scope: TenantScope, org_column: InstrumentedAttribute[int | None]
) -> ColumnElement[bool]:
    """The rows that are the scope's own: its org's, or the server-wide ones (no org)."""
    if isinstance(scope, OrgScope):
        return org_column == scope.org_id
    return org_column.is_(None)


def owner_org_id(scope: TenantScope) -> int | None:
    """The ``org_id`` of a row the scope owns: its org's id, or none for the server's."""
    return scope.org_id if isinstance(scope, OrgScope) else None
