"""wiremesh: a self-hosted, multi-tenant WireGuard mesh-VPN coordination server and agent."""

__version__ = "0.1.0"
