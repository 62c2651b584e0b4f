"""The migration that makes public keys unique per org keeps one device per duplicated key."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tests.server.db.helpers import connect, index_names, upgrade
from wiremesh.server.config import Settings
from wiremesh.server.devices.models import PUBLIC_KEY_UNIQUE_INDEX

KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="


def _device(device_id: int, org_id: int, key: str | None, revoked: bool = False) -> str:
    revoked_at = "CURRENT_TIMESTAMP" if revoked else "NULL"
    key_sql = f"'{key}'" if key else "NULL"
    return (
        "INSERT INTO virtual_ip_mapping (id, org_id, user_id, peer_id, virtual_ip, public_key, "
        "hostname, credential_lookup, credential_hash, created_at, revoked_at) VALUES "
        f"({device_id}, {org_id}, 1, 'peer-{device_id}', '100.64.{org_id}.{device_id}', "
        f"{key_sql}, 'h{device_id}', 'dev{device_id:013d}', '{'e' * 64}', CURRENT_TIMESTAMP, "
        f"{revoked_at})"
    )


async def test_duplicates_keep_the_earliest_live_device_and_the_index_holds(
    empty_settings: Settings,
) -> None:
    settings = empty_settings
    await upgrade(settings, "peer_paths")
    async with connect(settings) as conn:
        await conn.execute(
            sa.text(
                'INSERT INTO "user" (id, email, name, is_server_admin, is_active, created_at) '
                "VALUES (1, 'u@example.com', 'U', false, true, CURRENT_TIMESTAMP)"
            )
        )
        for org_id in (1, 2):
            await conn.execute(
                sa.text(
                    "INSERT INTO organization (id, name, network_cidr, created_at) VALUES "
                    f"({org_id}, 'org{org_id}', '100.64.{org_id}.0/24', CURRENT_TIMESTAMP)"
                )
            )
        for statement in (
            _device(1, 1, KEY_A, revoked=True),  # earliest, but revoked: loses the key
            _device(2, 1, KEY_A),  # earliest live device: keeps it
            _device(3, 1, KEY_A),  # later: cleared
            _device(4, 1, KEY_B),
            _device(5, 2, KEY_A),  # another org: untouched
            _device(6, 1, None),
            _device(7, 1, None),
        ):
            await conn.execute(sa.text(statement))

    await upgrade(settings, "head")
    async with connect(settings) as conn:
        rows = (
            await conn.execute(sa.text("SELECT id, public_key FROM virtual_ip_mapping ORDER BY id"))
        ).all()
        assert [tuple(row) for row in rows] == [
            (1, None),
            (2, KEY_A),
            (3, None),
            (4, KEY_B),
            (5, KEY_A),
            (6, None),
            (7, None),
        ]
        assert PUBLIC_KEY_UNIQUE_INDEX in await index_names(conn)
    with pytest.raises(IntegrityError):
        async with connect(settings) as conn:
            await conn.execute(
                sa.text("UPDATE virtual_ip_mapping SET public_key = :key WHERE id = 4"),
                {"key": KEY_A},
            )
