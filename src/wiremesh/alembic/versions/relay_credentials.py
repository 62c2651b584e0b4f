"""Per-relay credentials: a relay that has one checks in with it, not the global token.

Revision ID: relay_credentials
Revises: unique_public_keys
Create Date: 2026-12-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "relay_credentials"
down_revision: str | None = "unique_public_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "relay_credential",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("lookup", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_credential")),
        sa.UniqueConstraint("lookup", name=op.f("uq_relay_credential_lookup")),
        sa.UniqueConstraint("name", name=op.f("uq_relay_credential_name")),
    )


def downgrade() -> None:
    op.drop_table("relay_credential")
