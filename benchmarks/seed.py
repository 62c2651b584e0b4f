"""A fresh benchmark database: created, migrated by the real migrations, seeded in bulk.

Enrolling tens of thousands of devices through the API is not what the benchmarks measure,
so organizations, one user, memberships and devices are written straight into PostgreSQL
with COPY. Device credentials are issued with the server's own ``issue_secret("wmd")`` and
stored as the server expects them (lookup + sha256), so agents authenticate for real.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.engine import URL, make_url

from wiremesh.server.auth.secrets import issue_secret
from wiremesh.server.config import Settings
from wiremesh.server.db import migrate
from wiremesh.server.devices.service import DEVICE_CREDENTIAL_KIND

POSTGRES_URL_ENV = "WIREMESH_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
NETWORK_POOL = ipaddress.ip_network("10.0.0.0/8")


def admin_url(url: str | None = None) -> URL:
    """The server URL to create databases through, as SQLAlchemy asyncpg URL."""
    raw = url or os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
    parsed = make_url(raw)
    return parsed.set(drivername="postgresql+asyncpg")


def database_url(admin: URL, name: str) -> str:
    """SQLAlchemy URL of database ``name`` on the same server (what the server gets)."""
    return admin.set(database=name).render_as_string(hide_password=False)


def asyncpg_dsn(admin: URL, name: str | None = None) -> str:
    url = admin.set(drivername="postgresql", database=name or admin.database or "postgres")
    return url.render_as_string(hide_password=False)


async def create_database(admin: URL, name: str) -> str:
    """Drop ``name`` if it exists, create it empty, run the migrations; returns its URL."""
    connection = await asyncpg.connect(asyncpg_dsn(admin))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = database_url(admin, name)
    await asyncio.to_thread(migrate.upgrade, Settings(database_url=url))
    return url


async def drop_database(admin: URL, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@dataclass(frozen=True, slots=True)
class SeededDevice:
    """One device the load generator can connect as."""

    index: int
    """Position in :attr:`Seeded.devices` (the load generator's agent id)."""
    device_id: int
    org_id: int
    peer_id: str
    credential: str


@dataclass
class SeededOrg:
    org_id: int
    name: str
    network: str
    devices: list[SeededDevice] = field(default_factory=list)


@dataclass
class Seeded:
    user_id: int
    orgs: list[SeededOrg]
    devices: list[SeededDevice]


def _networks(sizes: list[int]) -> list[str]:
    """One network per org, large enough for its devices, carved from 10.0.0.0/8 in order.

    Each is at least a /24 and aligned on its own size, like the server's own pool.
    """
    cursor = int(NETWORK_POOL.network_address)
    end = int(NETWORK_POOL.broadcast_address) + 1
    networks = []
    for size in sizes:
        host_bits = max(8, math.ceil(math.log2(size + 2)))
        block = 1 << host_bits
        cursor = (cursor + block - 1) // block * block
        if cursor + block > end:
            raise ValueError("the organizations do not fit in 10.0.0.0/8")
        networks.append(str(ipaddress.ip_network((cursor, 32 - host_bits))))
        cursor += block
    return networks


async def seed(url: str, org_sizes: list[int], *, prefix: str = "bench") -> Seeded:
    """Insert one user, ``len(org_sizes)`` orgs (the user owns each) and their devices.

    Device ``k`` of the whole run gets peer id ``peer-<k as 10 hex digits>`` and a real
    device credential; virtual IPs are the first host addresses of each org's network.
    """
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            user_id = await connection.fetchval(
                'INSERT INTO "user" (email, name, is_server_admin) '
                "VALUES ($1, $2, true) RETURNING id",
                f"{prefix}-owner@example.com",
                "Benchmark owner",
            )
            networks = _networks(org_sizes)
            names = [f"{prefix}-org-{i:05d}" for i in range(len(org_sizes))]
            rows = await connection.fetch(
                "INSERT INTO organization (name, network_cidr) "
                "SELECT * FROM unnest($1::text[], $2::text[]) RETURNING id, name",
                names,
                networks,
            )
            org_ids = {row["name"]: row["id"] for row in rows}
            orgs = [
                SeededOrg(org_id=org_ids[name], name=name, network=network)
                for name, network in zip(names, networks, strict=True)
            ]
            await connection.copy_records_to_table(
                "membership",
                records=[(org.org_id, user_id, "owner") for org in orgs],
                columns=["org_id", "user_id", "role"],
            )
            device_rows: list[tuple[int, int, str, str, str, str, str]] = []
            devices: list[SeededDevice] = []
            for org, size in zip(orgs, org_sizes, strict=True):
                hosts = ipaddress.ip_network(org.network).hosts()
                for _ in range(size):
                    index = len(device_rows)
                    issued = issue_secret(DEVICE_CREDENTIAL_KIND)
                    peer_id = f"peer-{index:010x}"
                    device_rows.append(
                        (
                            org.org_id,
                            user_id,
                            peer_id,
                            str(next(hosts)),
                            f"bench-{index}",
                            issued.lookup,
                            issued.secret_hash,
                        )
                    )
                    org.devices.append(
                        SeededDevice(
                            index=index,
                            device_id=0,
                            org_id=org.org_id,
                            peer_id=peer_id,
                            credential=issued.plaintext,
                        )
                    )
            await connection.copy_records_to_table(
                "virtual_ip_mapping",
                records=device_rows,
                columns=[
                    "org_id",
                    "user_id",
                    "peer_id",
                    "virtual_ip",
                    "hostname",
                    "credential_lookup",
                    "credential_hash",
                ],
            )
            ids = {
                row["peer_id"]: row["id"]
                for row in await connection.fetch("SELECT id, peer_id FROM virtual_ip_mapping")
            }
            for org in orgs:
                org.devices = [
                    SeededDevice(
                        index=d.index,
                        device_id=ids[d.peer_id],
                        org_id=d.org_id,
                        peer_id=d.peer_id,
                        credential=d.credential,
                    )
                    for d in org.devices
                ]
                devices.extend(org.devices)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return Seeded(user_id=user_id, orgs=orgs, devices=devices)
