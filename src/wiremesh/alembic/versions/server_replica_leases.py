"""Replica leases: which server processes are alive, so their sessions' rows can be trusted.

Revision ID: server_replica_leases
Revises: mail_outbox_and_alerts
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "server_replica_leases"
down_revision: str | None = "mail_outbox_and_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_replica",
        sa.Column("server_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("server_id", name=op.f("pk_server_replica")),
    )
    op.create_index(op.f("ix_server_replica_heartbeat_at"), "server_replica", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_table("server_replica")
