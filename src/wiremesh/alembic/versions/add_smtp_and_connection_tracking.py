"""The seed's change: smtp_settings, connection_status and virtual_ip_mapping.last_seen_at.

Columns, defaults and index names are exactly the seed's. Beyond the seed, a partial unique
index admits at most one global row (``org_id IS NULL``), which a plain UNIQUE(org_id) does
not do on either PostgreSQL or SQLite.

Revision ID: add_smtp_and_connection_tracking
Revises: initial_schema
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "add_smtp_and_connection_tracking"
down_revision: str | None = "initial_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "smtp_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("smtp_server", sa.String(length=255), nullable=False),
        sa.Column("smtp_port", sa.Integer(), nullable=False),
        sa.Column("smtp_username", sa.String(length=255), nullable=True),
        sa.Column("smtp_password", sa.String(length=1024), nullable=True),
        sa.Column("from_email", sa.String(length=320), nullable=False),
        sa.Column("use_tls", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organization.id"],
            name=op.f("fk_smtp_settings_org_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smtp_settings")),
        sa.UniqueConstraint("org_id", name=op.f("uq_smtp_settings_org_id")),
    )
    op.create_index("ix_smtp_settings_org_id", "smtp_settings", ["org_id"])
    op.create_index(
        "uq_smtp_settings_single_global",
        "smtp_settings",
        [sa.text("(org_id IS NULL)")],
        unique=True,
        postgresql_where=sa.text("org_id IS NULL"),
        sqlite_where=sa.text("org_id IS NULL"),
    )

    op.create_table(
        "connection_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("virtual_ip", sa.String(length=45), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("public_ip", sa.String(length=45), nullable=True),
        sa.Column("public_port", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="connected", nullable=False),
        sa.Column(
            "connected_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ping_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_pong_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organization.id"],
            name=op.f("fk_connection_status_org_id_organization"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_connection_status_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_status")),
    )
    op.create_index("ix_connection_status_user_id", "connection_status", ["user_id"])
    op.create_index("ix_connection_status_org_id", "connection_status", ["org_id"])
    op.create_index("ix_connection_status_virtual_ip", "connection_status", ["virtual_ip"])
    op.create_index("ix_connection_status_status", "connection_status", ["status"])
    op.create_index("ix_connection_status_last_seen_at", "connection_status", ["last_seen_at"])

    with op.batch_alter_table("virtual_ip_mapping") as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("virtual_ip_mapping") as batch_op:
        batch_op.drop_column("last_seen_at")
    op.drop_table("connection_status")
    op.drop_table("smtp_settings")
