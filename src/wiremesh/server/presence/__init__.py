"""Agent sessions: the WebSocket hub, heartbeat, ``connection_status`` history and monitoring."""
