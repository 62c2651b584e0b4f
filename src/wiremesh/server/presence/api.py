"""The agent WebSocket endpoint and the monitoring API (who is online, at risk, history)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from wiremesh.server.presence.gateway import serve_agent
from wiremesh.server.state import AppState

router = APIRouter()

AGENT_WEBSOCKET_PATH = "/agent/ws"


@router.websocket(AGENT_WEBSOCKET_PATH)
async def agent_session(websocket: WebSocket) -> None:
    """The agent's session: see docs/protocol.md for every message and close code."""
    state: AppState = websocket.app.state.wiremesh
    await serve_agent(websocket, state)
