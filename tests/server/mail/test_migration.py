"""The mail revision on both databases: existing SMTP rows survive it both ways, get safe
defaults, and the one-global-row index is still there afterwards (SQLite included)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from wiremesh.server.config import Settings
from wiremesh.server.db import migrate
from wiremesh.server.db.session import create_engine

BEFORE = "connection_session_details"
INSERT = (
    "INSERT INTO smtp_settings (org_id, smtp_server, smtp_port, smtp_username, smtp_password, "
    "from_email) VALUES (NULL, :host, 587, 'u', 'p', 'a@example.com')"
)


async def test_down_and_up_keep_rows_and_the_global_index(settings: Settings) -> None:
    await asyncio.to_thread(migrate.downgrade, settings, BEFORE)
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(INSERT), {"host": "smtp.example.com"})
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT smtp_server, tls_mode, verify_certificate, ca_certificate "
                        "FROM smtp_settings"
                    )
                )
            ).one()
        assert tuple(row) == ("smtp.example.com", None, True, None)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(sync.dialect.get_table_names(sync)))
        assert {
            "mail_outbox",
            "org_invitation",
            "org_alert_settings",
            "device_alert_state",
        } <= tables

        await asyncio.to_thread(migrate.downgrade, settings, BEFORE)
        await asyncio.to_thread(migrate.upgrade, settings)
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(text(INSERT), {"host": "second.example.com"})
    finally:
        await engine.dispose()
