"""The revision that adds one live row per device: duplicates left by crashed replicas end,
the newest stays live, and from then on the database refuses a second live row."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.server.db.helpers import (
    connect,
    dataset,
    index_names,
    insert_rows,
    raw_rows,
    reflect,
    upgrade,
)
from wiremesh.server.config import Settings
from wiremesh.server.presence.models import LIVE_ROW_PER_DEVICE_INDEX

BEFORE = "server_replica_leases"


async def test_duplicate_live_rows_end_and_the_index_refuses_new_ones(
    empty_settings: Settings,
) -> None:
    settings = empty_settings
    await upgrade(settings, BEFORE)
    data = dataset()
    alice, other = data["connection_status"]
    twice = {**alice, "id": 3, "connection_id": uuid.uuid4(), "connected_at": alice["last_seen_at"]}
    data["connection_status"] = [alice, other, twice]
    async with connect(settings) as conn:
        await insert_rows(conn, data)

    await upgrade(settings, "head")

    async with connect(settings) as conn:
        assert LIVE_ROW_PER_DEVICE_INDEX in await index_names(conn)
        rows = {row["id"]: row for row in await raw_rows(conn, "connection_status")}
        assert (rows[1]["status"], rows[1]["end_reason"]) == ("disconnected", "superseded")
        assert rows[1]["disconnected_at"] is not None
        assert (rows[3]["status"], rows[3]["end_reason"]) == ("connected", None)
        assert rows[2]["status"] == "timeout", "history is never rewritten"
    async with connect(settings) as conn:
        connection_status = await reflect(conn, "connection_status")
        with pytest.raises(sa.exc.IntegrityError):
            await conn.execute(
                sa.insert(connection_status),
                [{**twice, "id": 4, "connection_id": uuid.uuid4()}],
            )
