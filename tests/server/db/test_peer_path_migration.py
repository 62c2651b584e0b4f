"""The revision that adds ``peer_path``: rows follow their device, and it comes off cleanly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.server.db.helpers import (
    connect,
    current_revision,
    dataset,
    downgrade,
    index_names,
    insert_rows,
    raw_rows,
    reflect,
    schema_fingerprint,
    table_names,
    upgrade,
)
from wiremesh.server.config import Settings

REVISION = "peer_paths"
BEFORE = "nat_paths"

NOW = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)


def _row(device_id: int, peer_id: str, org_id: int) -> dict[str, object]:
    return {
        "device_id": device_id,
        "peer_id": peer_id,
        "org_id": org_id,
        "path": "direct",
        "endpoint": "198.51.100.7:51820",
        "last_handshake_at": NOW,
        "reported_at": NOW,
    }


async def test_peer_path_rows_go_with_their_device_and_the_revision_comes_off(
    empty_settings: Settings,
) -> None:
    settings = empty_settings
    await upgrade(settings, BEFORE)
    async with connect(settings) as conn:
        before = await schema_fingerprint(conn)
    await upgrade(settings, REVISION)
    data = dataset()
    async with connect(settings) as conn:
        assert await current_revision(conn) == REVISION
        assert "ix_peer_path_org_id_peer_id" in await index_names(conn)
        await insert_rows(conn, data)
        peer_path = await reflect(conn, "peer_path")
        await conn.execute(
            sa.insert(peer_path), [_row(1, "peer-x", 1), _row(1, "peer-y", 1), _row(2, "p", 2)]
        )
    async with connect(settings) as conn:
        with pytest.raises(sa.exc.IntegrityError):  # one row per (device, peer)
            await conn.execute(sa.insert(peer_path), [_row(1, "peer-x", 1)])
    async with connect(settings) as conn:
        with pytest.raises(sa.exc.IntegrityError):  # no row for a device that is not
            await conn.execute(sa.insert(peer_path), [_row(99, "peer-x", 1)])
    async with connect(settings) as conn:
        # Foreign keys are enforced on SQLite too: deleting the device deletes its rows.
        devices = await reflect(conn, "virtual_ip_mapping")
        await conn.execute(sa.delete(devices).where(devices.c.id == 1))
        rows = (await conn.execute(sa.select(peer_path))).mappings().all()
        assert [(row["device_id"], row["peer_id"]) for row in rows] == [(2, "p")]
        assert rows[0]["last_handshake_at"] == NOW

    await downgrade(settings, "-1")
    async with connect(settings) as conn:
        assert await current_revision(conn) == BEFORE
        assert "peer_path" not in await table_names(conn)
        assert await schema_fingerprint(conn) == before
        assert [row["id"] for row in await raw_rows(conn, "virtual_ip_mapping")] == [2]
    await upgrade(settings, "head")
