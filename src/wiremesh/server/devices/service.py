"""Setup keys, enrollment and device lifecycle (rename, revoke, delete, key rotation)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wiremesh.server.auth.secrets import issue_secret, parse_lookup, secret_matches
from wiremesh.server.db.base import utcnow
from wiremesh.server.devices import repository, schemas
from wiremesh.server.devices.models import PUBLIC_KEY_UNIQUE_INDEX, SetupKey, VirtualIPMapping
from wiremesh.server.errors import ApiError, Conflict, Invalid, NotFound
from wiremesh.server.events import recorder
from wiremesh.server.events.schemas import DeviceChanged, DeviceRemoved
from wiremesh.server.ipam.service import allocate_virtual_ip, lock_org_network
from wiremesh.server.orgs.models import Membership, Organization, OrgRole
from wiremesh.server.paths import repository as paths_repository
from wiremesh.server.sqlalchemy_helpers import scalar_exists
from wiremesh.server.validation import MAX_DB_ID

SETUP_KEY_KIND = "wmk"
DEVICE_CREDENTIAL_KIND = "wmd"
MIN_SETUP_KEY_LIFETIME = timedelta(seconds=60)
MAX_SETUP_KEY_LIFETIME = timedelta(seconds=schemas.MAX_SETUP_KEY_LIFETIME)


def setup_key_usable(key: SetupKey) -> bool:
    now = utcnow()
    limit = 1 if not key.reusable else key.usage_limit
    return (
        key.revoked_at is None
        and (key.expires_at is None or key.expires_at > now)
        and (limit is None or key.used_count < limit)
    )


async def create_setup_key(
    session: AsyncSession,
    org_id: int,
    *,
    owner_user_id: int,
    name: str,
    reusable: bool,
    usage_limit: int | None,
    expires_in: timedelta | None,
) -> tuple[SetupKey, str]:
    """A new key; devices it enrolls belong to ``owner_user_id``, who must be a member."""
    is_member = await scalar_exists(
        session,
        Membership.org_id == org_id,
        Membership.user_id == owner_user_id,
    )
    if not is_member:
        raise Invalid("not_a_member", f"user {owner_user_id} is not a member of this organization")
    if not reusable and usage_limit not in (None, 1):
        raise Invalid("invalid_usage_limit", "a one-off key is used once; drop usage_limit")
    if expires_in is not None and not (
        MIN_SETUP_KEY_LIFETIME <= expires_in <= MAX_SETUP_KEY_LIFETIME
    ):
        raise Invalid("invalid_expiry", "a setup key lives between 1 minute and 10 years")
    issued = issue_secret(SETUP_KEY_KIND)
    key = SetupKey(
        org_id=org_id,
        user_id=owner_user_id,
        name=name,
        lookup=issued.lookup,
        secret_hash=issued.secret_hash,
        reusable=reusable,
        usage_limit=1 if not reusable else usage_limit,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(key)
    await session.flush()
    return key, issued.plaintext


async def revoke_setup_key(session: AsyncSession, org_id: int, key_id: int) -> SetupKey:
    key = await repository.get_setup_key(session, org_id, key_id)
    if key is None:
        raise NotFound("setup key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


async def default_key_owner(
    session: AsyncSession,
    org_id: int,
    *,
    caller_user_id: int | None = None,
    owner_option: str = "--user",
) -> int:
    """Who owns the devices a new key enrolls when its maker named nobody: the caller if
    they are a member of the org, else (a server administrator from outside, the operator's
    CLI) the org's first owner; 422 ``no_owner`` naming ``owner_option`` when it has none."""
    if caller_user_id is not None and await scalar_exists(
        session, Membership.org_id == org_id, Membership.user_id == caller_user_id
    ):
        return caller_user_id
    owner = (
        await session.execute(
            select(Membership.user_id)
            .where(Membership.org_id == org_id, Membership.role == OrgRole.OWNER.value)
            .order_by(Membership.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if owner is None:
        raise Invalid(
            "no_owner",
            "the organization has no owner to own the devices this key enrolls; "
            f"pass {owner_option} to name a member who will",
        )
    return owner


def _bad_setup_key() -> ApiError:
    return ApiError(
        401, "invalid_setup_key", "the setup key is invalid, expired, used up or revoked"
    )


async def enroll(
    session: AsyncSession, setup_key: str, hostname: str, public_key: str | None
) -> tuple[VirtualIPMapping, Organization, str]:
    """Register a device with a setup key: allocate its virtual IP and issue its credential."""
    lookup = parse_lookup(SETUP_KEY_KIND, setup_key)
    key = await repository.get_setup_key_by_lookup(session, lookup) if lookup else None
    if key is None or not secret_matches(setup_key, key.secret_hash) or not setup_key_usable(key):
        raise _bad_setup_key()
    org = await lock_org_network(session, key.org_id)
    if not await repository.consume_setup_key_use(session, key.id):
        raise _bad_setup_key()
    if public_key is not None:
        await _refuse_taken_key(session, org.id, public_key, device_id=None)
    virtual_ip = await allocate_virtual_ip(session, org)
    credential = issue_secret(DEVICE_CREDENTIAL_KIND)
    device = VirtualIPMapping(
        org_id=org.id,
        user_id=key.user_id,
        peer_id=await _new_peer_id(session, org.id),
        virtual_ip=virtual_ip,
        public_key=public_key,
        hostname=hostname,
        credential_lookup=credential.lookup,
        credential_hash=credential.secret_hash,
        setup_key_id=key.id,
    )
    session.add(device)
    await _flush_key(session)
    await _changed(session, device, "device_enrolled", org.network_cidr)
    return device, org, credential.plaintext


async def _changed(
    session: AsyncSession,
    device: VirtualIPMapping,
    kind: Literal["device_enrolled", "device_updated"],
    network: str | None = None,
) -> None:
    """Tell every replica, in this transaction, what peers now see of the device."""
    if network is None:
        network = (
            await session.execute(
                select(Organization.network_cidr).where(Organization.id == device.org_id)
            )
        ).scalar_one()
    await recorder.record(
        session,
        DeviceChanged(
            org_id=device.org_id,
            kind=kind,
            device_id=device.id,
            user_id=device.user_id,
            peer_id=device.peer_id,
            hostname=device.hostname,
            virtual_ip=device.virtual_ip,
            public_key=device.public_key,
            network=network,
        ),
    )


async def _removed(
    session: AsyncSession,
    device: VirtualIPMapping,
    kind: Literal["device_revoked", "device_deleted"],
) -> None:
    """Tell every replica, in this transaction: peers drop it, its session closes; and
    forget the paths it reported and the paths to it."""
    await paths_repository.forget_device_paths(session, device)
    await recorder.record(
        session,
        DeviceRemoved(org_id=device.org_id, kind=kind, device_id=device.id, peer_id=device.peer_id),
    )


async def _new_peer_id(session: AsyncSession, org_id: int) -> str:
    while True:
        candidate = f"peer-{secrets.token_hex(5)}"
        if not await repository.peer_id_taken(session, org_id, candidate):
            return candidate


async def authenticate_device(session: AsyncSession, credential: str) -> VirtualIPMapping:
    """The device behind a credential, or an ApiError: 401 when unknown, 403 when revoked."""
    lookup = parse_lookup(DEVICE_CREDENTIAL_KIND, credential)
    device = await repository.get_device_by_lookup(session, lookup) if lookup else None
    if device is None or not secret_matches(credential, device.credential_hash):
        raise ApiError(401, "invalid_credential", "the device credential is not valid")
    if device.revoked_at is not None:
        raise ApiError(403, "device_revoked", "this device has been revoked")
    return device


async def authenticate_agent(session: AsyncSession, credential: str) -> repository.AgentCredential:
    """``authenticate_device`` for the agent connect path: the same checks and errors, in
    one Core statement that brings the org's network too."""
    lookup = parse_lookup(DEVICE_CREDENTIAL_KIND, credential)
    device = await repository.get_agent_credential(session, lookup) if lookup else None
    if device is None or not secret_matches(credential, device.credential_hash):
        raise ApiError(401, "invalid_credential", "the device credential is not valid")
    if device.revoked_at is not None:
        raise ApiError(403, "device_revoked", "this device has been revoked")
    return device


async def get_device(session: AsyncSession, org_id: int, device_id: int) -> VirtualIPMapping:
    device = await repository.get_device(session, org_id, device_id)
    if device is None:
        raise NotFound("device")
    return device


async def resolve_device(
    session: AsyncSession, ref: str, org_id: int | None = None
) -> VirtualIPMapping:
    """A device by id, peer id, hostname or virtual IP (for the CLI); ambiguity is an error."""
    text = ref.strip()
    criteria = [
        VirtualIPMapping.peer_id == text,
        VirtualIPMapping.hostname == text,
        VirtualIPMapping.virtual_ip == text,
    ]
    if text.isdigit() and len(text) <= 10 and int(text) <= MAX_DB_ID:
        criteria.append(VirtualIPMapping.id == int(text))
    query = select(VirtualIPMapping).where(or_(*criteria))
    if org_id is not None:
        query = query.where(VirtualIPMapping.org_id == org_id)
    found = (await session.execute(query.limit(2))).scalars().all()
    if not found:
        raise NotFound("device")
    if len(found) > 1:
        raise Conflict("ambiguous_device", f"{ref!r} names several devices; give --org or the id")
    return found[0]


async def rename_device(
    session: AsyncSession, org_id: int, device_id: int, hostname: str
) -> VirtualIPMapping:
    device = await get_device(session, org_id, device_id)
    if device.hostname != hostname:
        device.hostname = hostname
        await session.flush()
        if device.revoked_at is None:
            await _changed(session, device, "device_updated")
    return device


async def revoke_device(session: AsyncSession, org_id: int, device_id: int) -> VirtualIPMapping:
    device = await get_device(session, org_id, device_id)
    if device.revoked_at is not None:
        raise Conflict("already_revoked", "the device is already revoked")
    device.revoked_at = utcnow()
    await session.flush()
    await _removed(session, device, "device_revoked")
    return device


async def delete_device(session: AsyncSession, org_id: int, device_id: int) -> VirtualIPMapping:
    """Forget a device; its address goes back to the pool, its connection history stays."""
    device = await get_device(session, org_id, device_id)
    await session.delete(device)
    await session.flush()
    await _removed(session, device, "device_deleted")
    return device


async def set_public_key(
    session: AsyncSession, device: VirtualIPMapping, public_key: str
) -> VirtualIPMapping:
    if device.public_key != public_key:
        await _refuse_taken_key(session, device.org_id, public_key, device_id=device.id)
        device.public_key = public_key
        await _flush_key(session)
        await _changed(session, device, "device_updated")
    return device


def _key_taken() -> Conflict:
    return Conflict(
        "public_key_taken",
        "another device of this organization has this WireGuard public key; "
        "generate a new key pair for this device",
    )


async def _refuse_taken_key(
    session: AsyncSession, org_id: int, public_key: str, *, device_id: int | None
) -> None:
    """409 ``public_key_taken`` when another device of the org has the key (WireGuard knows a
    peer by its key: two devices with one key cannot both be reached)."""
    criteria = [VirtualIPMapping.org_id == org_id, VirtualIPMapping.public_key == public_key]
    if device_id is not None:
        criteria.append(VirtualIPMapping.id != device_id)
    if await scalar_exists(session, *criteria):
        raise _key_taken()


async def _flush_key(session: AsyncSession) -> None:
    """Flush a device's key; a concurrent request that took it meanwhile is the same 409."""
    try:
        await session.flush()
    except IntegrityError as exc:
        if PUBLIC_KEY_UNIQUE_INDEX in str(exc.orig) or "public_key" in str(exc.orig):
            raise _key_taken() from None
        raise
