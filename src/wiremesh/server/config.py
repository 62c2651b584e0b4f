"""Typed server settings, read from ``WIREMESH_*`` environment variables and an optional file."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from wiremesh.protocol import (
    DEFAULT_AUTH_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_PER_SECOND,
)

CONFIG_FILE_ENV = "WIREMESH_CONFIG_FILE"
# SMTP replies one send waits for after the greeting (see mail.transport.SmtpTransport).
MAIL_COMMANDS_PER_SEND = 9


class Settings(BaseSettings):
    """Everything an operator can configure; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="WIREMESH_", extra="forbid")

    data_dir: Path = Field(
        default=Path("wiremesh-data"), description="Where the embedded state lives"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; None means SQLite in data_dir"
    )
    database_pool_size: int = Field(default=20, ge=1, le=200)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="URL agents and mails link to")

    # The protocol's defaults, so the server and docs/protocol.md cannot drift apart.
    heartbeat_interval: float = Field(default=DEFAULT_HEARTBEAT_INTERVAL, gt=0, le=3600)
    heartbeat_timeout: float = Field(default=DEFAULT_HEARTBEAT_TIMEOUT, gt=0, le=86400)
    heartbeat_flush_interval: float = Field(default=1.0, gt=0, le=60)
    relay_token: SecretStr | None = None
    """What relays present to ``/api/v1/relay/sync``; unset: this server takes no relays."""
    auth_timeout: float = Field(default=DEFAULT_AUTH_TIMEOUT, gt=0, le=300)
    peer_update_coalesce: float = Field(
        default=0.05, ge=0, le=5, description="Peer changes within this window share one delta"
    )
    device_sync_interval: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often live sessions are checked against revoked or deleted devices",
    )
    event_poll_interval: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description=(
            "How often each replica reads new events without being woken; PostgreSQL NOTIFY "
            "wakes replicas at once, so this is its fallback, and on SQLite how the server "
            "sees changes the CLI made"
        ),
    )
    event_retention_hours: float = Field(
        default=24.0, gt=0, le=24 * 365, description="Events older than this are pruned"
    )
    replica_lease_ttl: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="A replica silent this long is dead; its connected rows are ended",
    )
    agent_rate_burst: int = Field(default=DEFAULT_RATE_BURST, ge=1)
    agent_rate_per_second: float = Field(default=DEFAULT_RATE_PER_SECOND, gt=0)

    connection_retention_days: float = Field(default=30.0, gt=0)
    cleanup_interval: float = Field(default=3600.0, gt=0)
    cleanup_batch_size: int = Field(default=5000, ge=1)

    mail_poll_interval: float = Field(default=5.0, gt=0, le=3600)
    mail_max_attempts: int = Field(default=100, ge=1, le=1000)
    mail_retry_base_delay: float = Field(default=30.0, gt=0)
    mail_retry_max_delay: float = Field(default=3600.0, gt=0)
    mail_give_up_after_hours: float = Field(
        default=72.0,
        gt=0,
        le=24 * 90,
        description="A mail still failing temporarily this long after it was queued fails",
    )
    mail_max_in_flight: int = Field(
        default=16, ge=1, le=1000, description="Mails this replica sends at once, in all"
    )
    mail_max_in_flight_per_org: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Mails of one organization sent at once, so a slow relay holds only these",
    )
    mail_connect_timeout: float = Field(default=5.0, gt=0, le=300)
    mail_greeting_timeout: float = Field(
        default=10.0, gt=0, le=600, description="For the SMTP banner (and implicit TLS)"
    )
    mail_command_timeout: float = Field(
        default=30.0, gt=0, le=600, description="For each later SMTP command's reply"
    )
    mail_claim_lease: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description=(
            "How long a mail being sent stays claimed; another replica resends it after this "
            "when its sender died (this replica takes its own back when it starts)"
        ),
    )
    mail_shutdown_grace: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="On stop, how long a mail whose data was sent may wait for its reply",
    )
    mail_retention_days: float = Field(
        default=30.0,
        gt=0,
        le=3650,
        description="Sent and failed mails older than this are deleted by the cleanup",
    )
    alert_check_interval: float = Field(default=30.0, gt=0, le=86400)
    smtp_allow_private_hosts: bool = Field(
        default=False,
        description=(
            "Let organizations' SMTP settings point at loopback, link-local, private, CGNAT "
            "or unspecified addresses (the global settings always may)"
        ),
    )
    smtp_test_burst: int = Field(
        default=5, ge=1, le=1000, description="Test mails an organization may send at once"
    )
    smtp_test_per_minute: float = Field(
        default=2.0,
        gt=0,
        le=1000,
        description="How fast an organization's test mail budget refills",
    )

    default_network_pool: str = Field(
        default="100.64.0.0/10", description="Org networks are carved from this range"
    )
    default_org_prefix: int = Field(default=20, ge=8, le=30)
    trusted_proxies: list[str] = Field(default_factory=list)
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = Field(
        default="x-forwarded-for",
        description=(
            "Which header the trusted proxies write the client's address to; the other one "
            "is ignored, since a client could send it itself"
        ),
    )

    auth_failure_burst: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="Failed authentications a client address may have at once",
    )
    auth_failure_per_minute: float = Field(
        default=10.0,
        gt=0,
        le=1_000_000,
        description="How fast a client's failed-authentication budget refills",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="A request body larger than this is refused with 413 before it is parsed",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="`wiremesh server` refuses a request line with headers larger than this",
    )

    secret_keys: list[str] = Field(
        default_factory=list, description="Fernet keys, newest first; empty = key file in data_dir"
    )
    secret_key_file: Path | None = None

    server_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Replica identity; default <hostname>:<port>, stable across restarts",
    )
    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment beats the optional TOML file named by ``WIREMESH_CONFIG_FILE``."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise ValueError(f"{CONFIG_FILE_ENV} names {config_file!r}, which is not a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("default_network_pool")
    @classmethod
    def _valid_pool(cls, value: str) -> str:
        network = ipaddress.ip_network(value, strict=True)
        if network.version != 4:
            raise ValueError("the network pool must be IPv4")
        return str(network)

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(item, strict=False)) for item in value]

    @model_validator(mode="after")
    def _timeout_exceeds_interval(self) -> Settings:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must be longer than heartbeat_interval")
        longest_send = (
            self.mail_connect_timeout
            + self.mail_greeting_timeout
            + self.mail_command_timeout * MAIL_COMMANDS_PER_SEND
        )
        if self.mail_claim_lease <= longest_send:
            raise ValueError(
                f"mail_claim_lease must be longer than the longest send ({longest_send:.0f} s: "
                f"connect + greeting + {MAIL_COMMANDS_PER_SEND} x command timeout)"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        """The URL actually used: the configured one, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'wiremesh.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @cached_property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item) for item in self.trusted_proxies]

    @cached_property
    def replica_id(self) -> str:
        """Stable across a restart on the same host and port, so a restarted replica ends
        the rows of its previous life at once instead of after a lease."""
        if self.server_id:
            return self.server_id
        return f"{os.uname().nodename}:{self.port}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings; keyword overrides win over environment and file (CLI and tests)."""
    return Settings(**overrides)
