"""Paths between devices: relays, and the address candidates of each device.

Revision ID: nat_paths
Revises: replica_events
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "nat_paths"
down_revision: str | None = "replica_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "relay",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.String(length=44), nullable=False),
        sa.Column("endpoint", sa.String(length=53), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay")),
        sa.UniqueConstraint("name", name=op.f("uq_relay_name")),
    )
    op.create_table(
        "device_candidates",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("lan", sa.JSON(), nullable=False),
        sa.Column("observed", sa.String(length=53), nullable=True),
        sa.Column("observed_by", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["virtual_ip_mapping.id"],
            name=op.f("fk_device_candidates_device_id_virtual_ip_mapping"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_candidates")),
    )
    op.create_index(
        op.f("ix_device_candidates_org_id"), "device_candidates", ["org_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_device_candidates_org_id"), table_name="device_candidates")
    op.drop_table("device_candidates")
    op.drop_table("relay")
