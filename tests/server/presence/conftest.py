"""Reading what the presence layer wrote, and a socket that never answers.

The live server and the org with an owner are shared fixtures (:mod:`tests.support.live`)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from wiremesh.server.presence.models import ConnectionStatus


async def connection_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[ConnectionStatus]:
    """Every connection_status row, oldest first."""
    async with sessionmaker() as session:
        result = await session.execute(select(ConnectionStatus).order_by(ConnectionStatus.id))
        return list(result.scalars())


async def silent_close_code(ws: ClientConnection) -> int | None:
    """Read without answering anything until the server closes; the code it closed with."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
