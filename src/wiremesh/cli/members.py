"""`wiremesh member`: who belongs to an organization, with which role (as the operator)."""

from __future__ import annotations

from typing import Any

import typer

from wiremesh.cli._common import JsonOption, emit, run, unit_of_work
from wiremesh.server.auth.principal import operator_principal
from wiremesh.server.orgs import service as orgs_service
from wiremesh.server.orgs.models import Membership, OrgRole
from wiremesh.server.orgs.schemas import MemberAdd
from wiremesh.server.users import service as users_service
from wiremesh.server.users.models import User
from wiremesh.server.users.schemas import parse_input

app = typer.Typer(no_args_is_help=True, help="Members of organizations.")

OrgOption = typer.Option(..., "--org", help="Organization id or name")
UserOption = typer.Option(..., "--user", help="The member's e-mail")


def member_row(membership: Membership, user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "email": user.email,
        "name": user.name,
        "role": membership.role,
        "joined_at": membership.created_at.isoformat(),
    }


@app.command("add")
def add(
    org: str = OrgOption,
    user: str = UserOption,
    role: OrgRole = typer.Option(OrgRole.MEMBER, "--role", help="owner, admin or member"),
    as_json: bool = JsonOption,
) -> None:
    """Add an existing user to an organization."""

    async def work() -> dict[str, Any]:
        data = parse_input(MemberAdd, email=user, role=role)
        async with unit_of_work() as session:
            found = await orgs_service.resolve_org(session, org)
            membership, member = await orgs_service.add_member(
                session, operator_principal(), found.id, role=data.role, email=data.email
            )
            return member_row(membership, member)

    emit(run(work), as_json)


@app.command("remove")
def remove(org: str = OrgOption, user: str = UserOption) -> None:
    """Remove a user from an organization (never its last owner)."""

    async def work() -> str:
        async with unit_of_work() as session:
            found = await orgs_service.resolve_org(session, org)
            member = await users_service.get_user_by_email(session, user)
            await orgs_service.remove_member(session, operator_principal(), found.id, member.id)
            return f"Removed {member.email} from {found.name}."

    typer.echo(run(work))


@app.command("list")
def list_members(org: str = OrgOption, as_json: bool = JsonOption) -> None:
    """List the members of an organization."""

    async def work() -> list[dict[str, Any]]:
        async with unit_of_work() as session:
            found = await orgs_service.resolve_org(session, org)
            rows = await orgs_service.list_members(
                session, operator_principal(), found.id, limit=100_000
            )
            return [member_row(membership, member) for membership, member in rows]

    emit(run(work), as_json)
