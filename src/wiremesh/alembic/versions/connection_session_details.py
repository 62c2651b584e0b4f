"""How each session ended and which replica owned it; one history row per session id.

Revision ID: connection_session_details
Revises: add_smtp_and_connection_tracking
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "connection_session_details"
down_revision: str | None = "add_smtp_and_connection_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connection_status") as batch_op:
        batch_op.add_column(sa.Column("end_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("close_code", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("server_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("agent_version", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            op.f("uq_connection_status_connection_id"), ["connection_id"]
        )
        batch_op.create_check_constraint(
            op.f("ck_connection_status_status"),
            "status IN ('connected', 'disconnected', 'timeout')",
        )


def downgrade() -> None:
    with op.batch_alter_table("connection_status") as batch_op:
        batch_op.drop_constraint(op.f("ck_connection_status_status"), type_="check")
        batch_op.drop_constraint(op.f("uq_connection_status_connection_id"), type_="unique")
        batch_op.drop_column("agent_version")
        batch_op.drop_column("server_id")
        batch_op.drop_column("close_code")
        batch_op.drop_column("end_reason")
