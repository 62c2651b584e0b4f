"""Organizations, their networks and memberships, and the one access rule for org resources."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth.principal import Principal
from wiremesh.server.config import Settings
from wiremesh.server.errors import ApiError, Conflict, Forbidden, Invalid, NotFound
from wiremesh.server.events import recorder
from wiremesh.server.events.schemas import OrgDeleted
from wiremesh.server.orgs import repository
from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.users import repository as users_repository
from wiremesh.server.users.models import User
from wiremesh.server.users.schemas import MAX_DB_ID

MIN_NETWORK_PREFIX = 8
MAX_NETWORK_PREFIX = 30
_NETWORK_LOCK = 0x776D_0002  # advisory lock key: "wm" + 2


# --- the access rule -------------------------------------------------------------------------


async def require_org_role(
    session: AsyncSession, principal: Principal, org_id: int, *, admin: bool
) -> OrgRole:
    """The caller's effective role in ``org_id``, or the refusal every org resource shares.

    - A member gets their role; with ``admin=True`` only owners and admins pass, the others
      get 403 ``forbidden``.
    - A server administrator always passes and gets ``OrgRole.OWNER`` (still 404 when the org
      does not exist).
    - Anyone else gets 404 ``not_found``, exactly as for an org that does not exist, so one
      tenant cannot learn which org ids another tenant has.
    """
    role = await repository.get_role(session, org_id, principal.user_id)
    if principal.is_server_admin:
        if role is None and await repository.get(session, org_id) is None:
            raise NotFound("organization")
        return OrgRole.OWNER
    if role is None:
        raise NotFound("organization")
    member_role = OrgRole(role)
    if admin and not member_role.can_administer:
        raise Forbidden("this needs an owner or admin of the organization")
    return member_role


async def own_role(
    session: AsyncSession, principal: Principal, org_id: int, effective: OrgRole
) -> OrgRole | None:
    """The caller's role as a member of ``org_id``, given their ``effective`` role from
    ``require_org_role``: the same for a member, and for a server administrator their
    membership's role, or None when they are not a member (what an org's ``role`` shows)."""
    if not principal.is_server_admin:
        return effective
    role = await repository.get_role(session, org_id, principal.user_id)
    return None if role is None else OrgRole(role)


# --- networks -------------------------------------------------------------------------------


def parse_network(value: str, pool: str) -> ipaddress.IPv4Network:
    """An org network as given by a person: IPv4, no host bits, /8../30, inside the pool."""
    text = value.strip()
    try:
        network = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.IPv4Network(text, strict=False)
        except ValueError:
            raise Invalid(
                "invalid_network", f"{value!r} is not an IPv4 network such as 100.64.0.0/20"
            ) from None
        raise Invalid(
            "invalid_network", f"{value!r} has host bits set; did you mean {loose}?"
        ) from None
    if "/" not in text or not MIN_NETWORK_PREFIX <= network.prefixlen <= MAX_NETWORK_PREFIX:
        raise Invalid(
            "invalid_network",
            f"the network prefix must be between /{MIN_NETWORK_PREFIX} and /{MAX_NETWORK_PREFIX}",
        )
    pool_network = ipaddress.IPv4Network(pool)
    if not network.subnet_of(pool_network):
        raise Invalid(
            "network_outside_pool", f"{network} is not inside the network pool {pool_network}"
        )
    return network


def _as_networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network]:
    found: list[ipaddress.IPv4Network] = []
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        if isinstance(network, ipaddress.IPv4Network):
            found.append(network)
    return found


def first_free_network(
    pool: ipaddress.IPv4Network, prefix: int, taken: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network | None:
    """The lowest /``prefix`` block of ``pool`` that overlaps none of ``taken``, or None."""
    if prefix < pool.prefixlen or prefix > 32:
        return None
    size = 1 << (32 - prefix)
    spans = sorted(
        (int(net.network_address), int(net.broadcast_address))
        for net in taken
        if net.overlaps(pool)
    )
    candidate = int(pool.network_address)
    for start, stop in spans:
        if stop < candidate:
            continue
        if start > candidate + size - 1:
            break
        candidate = (stop // size + 1) * size  # the next aligned block after this span
    if candidate + size - 1 > int(pool.broadcast_address):
        return None
    return ipaddress.IPv4Network((candidate, prefix))


# --- organizations --------------------------------------------------------------------------


def _name_taken(name: str) -> Conflict:
    return Conflict("org_name_taken", f"an organization named {name!r} already exists")


async def create_org(
    session: AsyncSession,
    settings: Settings,
    *,
    name: str,
    network_cidr: str | None = None,
    owner_user_id: int | None = None,
) -> Organization:
    """A new org with its own network: the one given, or the first free block of the pool.

    Networks of different orgs never overlap (409 ``network_overlap``), so an address names
    one device of one org. ``name`` must already be validated (see ``schemas.OrgName``).
    """
    if await repository.get_by_name(session, name) is not None:
        raise _name_taken(name)
    owner: User | None = None
    if owner_user_id is not None:
        owner = await users_repository.get(session, owner_user_id)
        if owner is None:
            raise NotFound("user")
    await users_repository.transaction_lock(session, _NETWORK_LOCK)
    taken = _as_networks(await repository.networks(session))
    if network_cidr is not None:
        network = parse_network(network_cidr, settings.default_network_pool)
        clash = next((other for other in taken if other.overlaps(network)), None)
        if clash is not None:
            raise Conflict(
                "network_overlap",
                f"{network} overlaps {clash}, the network of another organization",
            )
    else:
        pool = ipaddress.IPv4Network(settings.default_network_pool)
        free = first_free_network(pool, settings.default_org_prefix, taken)
        if free is None:
            raise Conflict(
                "network_pool_exhausted",
                f"no free /{settings.default_org_prefix} network is left in the pool {pool}",
            )
        network = free
    org = Organization(name=name, network_cidr=str(network))
    session.add(org)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent request took the name between check and insert
        raise _name_taken(name) from None
    if owner is not None:
        session.add(Membership(org_id=org.id, user_id=owner.id, role=OrgRole.OWNER.value))
        await session.flush()
    return org


async def list_orgs(
    session: AsyncSession, principal: Principal, *, limit: int = 100, offset: int = 0
) -> list[tuple[Organization, OrgRole | None]]:
    """Server administrators see every org, anyone else the orgs they belong to; each with
    the caller's role as a member (None where a server administrator is not one)."""
    if principal.is_server_admin:
        every = await repository.list_page_with_role(
            session, principal.user_id, limit=limit, offset=offset
        )
        return [(org, None if role is None else OrgRole(role)) for org, role in every]
    rows = await repository.list_page_for_user(
        session, principal.user_id, limit=limit, offset=offset
    )
    return [(org, OrgRole(role)) for org, role in rows]


async def get_org(
    session: AsyncSession, principal: Principal, org_id: int
) -> tuple[Organization, OrgRole | None]:
    """The org and the caller's role as a member (see ``own_role``)."""
    role = await require_org_role(session, principal, org_id, admin=False)
    org = await repository.get(session, org_id)
    if org is None:
        raise NotFound("organization")
    return org, await own_role(session, principal, org_id, role)


async def resolve_org(session: AsyncSession, ref: str) -> Organization:
    """An org by id (all digits) or by name, for the CLI."""
    text = ref.strip()
    org: Organization | None
    if text.isdigit():
        org_id = int(text) if len(text) <= 10 else 0
        org = await repository.get(session, org_id) if 1 <= org_id <= MAX_DB_ID else None
    else:
        org = await repository.get_by_name(session, text.lower())
    if org is None:
        raise NotFound("organization")
    return org


async def rename_org(
    session: AsyncSession, principal: Principal, org_id: int, name: str
) -> tuple[Organization, OrgRole | None]:
    """Server administrators only. Names are unique across the server, so a rename by an
    org admin would answer whether another org's name exists; org names are the operator's
    namespace (the CLI finds orgs by name), so the operator assigns them."""
    role = await require_org_role(session, principal, org_id, admin=True)
    if not principal.is_server_admin:
        raise Forbidden("renaming an organization needs a server administrator")
    org = await repository.get(session, org_id, for_update=True)
    if org is None:
        raise NotFound("organization")
    if org.name != name:
        other = await repository.get_by_name(session, name)
        if other is not None:
            raise _name_taken(name)
        org.name = name
        try:
            await session.flush()
        except IntegrityError:
            raise _name_taken(name) from None
    return org, await own_role(session, principal, org_id, role)


async def delete_org(session: AsyncSession, principal: Principal, org_id: int) -> None:
    """Server administrators only: the org goes with its members, devices and history."""
    if not principal.is_server_admin:
        raise Forbidden("deleting an organization needs a server administrator")
    org = await repository.get(session, org_id, for_update=True)
    if org is None:
        raise NotFound("organization")
    await repository.delete_org(session, org.id)
    session.expunge(org)
    await recorder.record(session, OrgDeleted(org_id=org_id))


# --- members --------------------------------------------------------------------------------


async def list_members(
    session: AsyncSession, principal: Principal, org_id: int, *, limit: int = 100, offset: int = 0
) -> list[tuple[Membership, User]]:
    """Any member may see who else belongs to the org."""
    await require_org_role(session, principal, org_id, admin=False)
    return list(await repository.list_members(session, org_id, limit=limit, offset=offset))


async def _target_member(
    session: AsyncSession, org_id: int, user_id: int
) -> tuple[Membership, User]:
    found = await repository.get_member(session, org_id, user_id)
    if found is None:
        raise NotFound("member")
    return found


async def add_member(
    session: AsyncSession,
    principal: Principal,
    org_id: int,
    *,
    role: OrgRole,
    user_id: int | None = None,
    email: str | None = None,
) -> tuple[Membership, User]:
    """Server administrators add an existing user (by id or e-mail) directly. Org admins are
    refused before any lookup, whatever the address, so the answer says nothing about which
    users exist: they invite instead (``orgs.invitations``), and the user consents by
    accepting."""
    await require_org_role(session, principal, org_id, admin=True)
    if not principal.is_server_admin:
        raise ApiError(
            403,
            "invitation_required",
            "members join by invitation (POST /orgs/{org_id}/invitations); only a server "
            "administrator adds a user directly",
        )
    if (user_id is None) == (email is None):
        raise Invalid("validation_error", "give exactly one of user_id and email")
    user = (
        await users_repository.get(session, user_id)
        if user_id is not None
        else await users_repository.get_by_email(session, (email or "").strip().lower())
    )
    if user is None:
        raise NotFound("user")
    if await repository.get_role(session, org_id, user.id) is not None:
        raise Conflict("already_member", f"{user.email} is already a member of this organization")
    membership = Membership(org_id=org_id, user_id=user.id, role=role.value)
    session.add(membership)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(
            "already_member", f"{user.email} is already a member of this organization"
        ) from None
    return membership, user


def _last_owner() -> Conflict:
    return Conflict("last_owner", "an organization must keep at least one owner")


async def change_role(
    session: AsyncSession, principal: Principal, org_id: int, user_id: int, role: OrgRole
) -> tuple[Membership, User]:
    """Owners and admins change roles; only owners grant or revoke the owner role."""
    caller = await require_org_role(session, principal, org_id, admin=True)
    await repository.get(session, org_id, for_update=True)  # serialize owner changes
    membership, user = await _target_member(session, org_id, user_id)
    current = OrgRole(membership.role)
    if OrgRole.OWNER in (current, role) and current is not role and caller is not OrgRole.OWNER:
        raise Forbidden("only an owner can grant or revoke the owner role")
    demoting_owner = current is OrgRole.OWNER and role is not OrgRole.OWNER
    if demoting_owner and await repository.count_owners(session, org_id) <= 1:
        raise _last_owner()
    membership.role = role.value
    await session.flush()
    return membership, user


async def remove_member(
    session: AsyncSession, principal: Principal, org_id: int, user_id: int
) -> None:
    """Owners and admins remove members (only owners remove owners); anyone may leave."""
    leaving = user_id == principal.user_id
    caller = await require_org_role(session, principal, org_id, admin=not leaving)
    await repository.get(session, org_id, for_update=True)  # serialize owner changes
    membership, _user = await _target_member(session, org_id, user_id)
    if membership.role == OrgRole.OWNER.value:
        if not leaving and caller is not OrgRole.OWNER:
            raise Forbidden("only an owner can remove an owner")
        if await repository.count_owners(session, org_id) <= 1:
            raise _last_owner()
    await repository.delete_membership(session, membership.id)
    session.expunge(membership)
