"""Users: create, look up, delete, and bootstrap the first server administrator."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth import service as auth_service
from wiremesh.server.auth.principal import Principal
from wiremesh.server.errors import Conflict, NotFound
from wiremesh.server.orgs import repository as orgs_repository
from wiremesh.server.users import repository
from wiremesh.server.users.models import User

DEFAULT_ADMIN_EMAIL = "admin@localhost"
DEFAULT_ADMIN_NAME = "Administrator"
BOOTSTRAP_TOKEN_NAME = "bootstrap"  # noqa: S105 - a label, not a secret
_BOOTSTRAP_LOCK = 0x776D_0001  # advisory lock key: "wm" + 1


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _email_taken(email: str) -> Conflict:
    return Conflict("email_taken", f"a user with the e-mail {email!r} already exists")


async def create_user(
    session: AsyncSession, *, email: str, name: str, is_server_admin: bool = False
) -> User:
    """A new user; 409 ``email_taken`` when the address (any letter case) is in use."""
    email = normalize_email(email)
    if await repository.get_by_email(session, email) is not None:
        raise _email_taken(email)
    user = User(email=email, name=name.strip(), is_server_admin=is_server_admin)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent request took the address between check and insert
        raise _email_taken(email) from None
    return user


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await repository.get(session, user_id)
    if user is None:
        raise NotFound("user")
    return user


async def get_user_by_email(session: AsyncSession, email: str) -> User:
    user = await repository.get_by_email(session, normalize_email(email))
    if user is None:
        raise NotFound("user")
    return user


async def list_users(session: AsyncSession, *, limit: int = 100, offset: int = 0) -> Sequence[User]:
    return await repository.list_page(session, limit=limit, offset=offset)


async def any_user_exists(session: AsyncSession) -> bool:
    return await repository.count(session) > 0


async def delete_user(session: AsyncSession, principal: Principal, user_id: int) -> None:
    """Delete a user with their memberships, tokens, devices and connection history.

    Refused for yourself, for the last active server administrator, and for the only owner
    of an organization (make someone else owner first).
    """
    user = await get_user(session, user_id)
    if user.id == principal.user_id:
        raise Conflict("cannot_delete_self", "you cannot delete your own user")
    if (
        user.is_server_admin
        and user.is_active
        and await repository.count_server_admins(session) <= 1
    ):
        raise Conflict("last_server_admin", "the last server administrator cannot be deleted")
    sole = await orgs_repository.orgs_solely_owned_by(session, user.id)
    if sole:
        raise Conflict(
            "last_owner",
            f"the user is the only owner of {', '.join(sorted(sole))}; "
            "make someone else owner first",
        )
    await repository.delete_user(session, user.id)
    session.expunge(user)


async def bootstrap_admin(
    session: AsyncSession, *, email: str = DEFAULT_ADMIN_EMAIL, name: str = DEFAULT_ADMIN_NAME
) -> tuple[User, str]:
    """The first server administrator and an API token for it (plaintext returned once).

    409 ``already_bootstrapped`` when a server administrator exists already.
    """
    await repository.transaction_lock(session, _BOOTSTRAP_LOCK)
    if await repository.count_server_admins(session) > 0:
        raise Conflict(
            "already_bootstrapped",
            "a server administrator already exists; "
            "add more with `wiremesh user create --server-admin`",
        )
    user = await create_user(session, email=email, name=name, is_server_admin=True)
    _token, plaintext = await auth_service.create_token(session, user, BOOTSTRAP_TOKEN_NAME)
    return user, plaintext


async def bootstrap_if_empty(session: AsyncSession) -> tuple[User, str] | None:
    """On a server's first start (no user at all): bootstrap the default administrator."""
    await repository.transaction_lock(session, _BOOTSTRAP_LOCK)
    if await any_user_exists(session):
        return None
    return await bootstrap_admin(session)
