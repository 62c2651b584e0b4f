"""Replicas share one truth: the events table, and at most one live row per device.

Revision ID: replica_events
Revises: server_replica_leases
Create Date: 2026-12-01

Before the unique index can exist, a device with several ``connected`` rows (left by
crashed replicas) keeps only its newest one live; the others end as ``superseded`` at the
moment they were last seen.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "replica_events"
down_revision: str | None = "server_replica_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_ROW_INDEX = "uq_connection_status_live_peer"
LIVE = sa.text("status = 'connected'")


def upgrade() -> None:
    op.create_table(
        "mesh_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mesh_event")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_mesh_event_created_at"), "mesh_event", ["created_at"])
    op.execute(
        """
        UPDATE connection_status
        SET status = 'disconnected',
            disconnected_at = COALESCE(last_seen_at, connected_at),
            end_reason = 'superseded'
        WHERE status = 'connected'
          AND id NOT IN (
              SELECT newest FROM (
                  SELECT MAX(id) AS newest FROM connection_status
                  WHERE status = 'connected' GROUP BY org_id, peer_id
              ) AS live
          )
        """
    )
    op.create_index(
        LIVE_ROW_INDEX,
        "connection_status",
        ["org_id", "peer_id"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )


def downgrade() -> None:
    op.drop_index(LIVE_ROW_INDEX, table_name="connection_status")
    op.drop_table("mesh_event")
