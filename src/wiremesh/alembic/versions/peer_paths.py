"""Each device's reported path to each of its peers (protocol version 3).

Revision ID: peer_paths
Revises: nat_paths
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "peer_paths"
down_revision: str | None = "nat_paths"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "peer_path",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=8), nullable=False),
        sa.Column("endpoint", sa.String(length=53), nullable=True),
        sa.Column("last_handshake_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["virtual_ip_mapping.id"],
            name=op.f("fk_peer_path_device_id_virtual_ip_mapping"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "peer_id", name=op.f("pk_peer_path")),
    )
    op.create_index("ix_peer_path_org_id_peer_id", "peer_path", ["org_id", "peer_id"])


def downgrade() -> None:
    op.drop_index("ix_peer_path_org_id_peer_id", table_name="peer_path")
    op.drop_table("peer_path")
