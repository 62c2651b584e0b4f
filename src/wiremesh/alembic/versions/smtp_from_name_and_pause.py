"""SMTP settings: a From display name, and a pause after the relay refused the login.

Plain ALTER TABLE ... ADD/DROP COLUMN on both databases: a batch (copy-and-swap) migration on
SQLite would lose the expression index that admits a single global row.

Revision ID: smtp_from_name_and_pause
Revises: relay_credentials
Create Date: 2026-12-13
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "smtp_from_name_and_pause"
down_revision: str | None = "relay_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("smtp_settings", sa.Column("from_name", sa.String(length=128), nullable=True))
    op.add_column(
        "smtp_settings", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "smtp_settings", sa.Column("paused_reason", sa.String(length=1024), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("smtp_settings", "paused_reason")
    op.drop_column("smtp_settings", "paused_at")
    op.drop_column("smtp_settings", "from_name")
