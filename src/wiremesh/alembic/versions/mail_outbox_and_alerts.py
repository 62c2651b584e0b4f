"""Mail: TLS options on smtp_settings, the mail outbox, org invitations and offline alerts.

The new smtp_settings columns are added with plain ALTER TABLE ... ADD COLUMN on both
databases: a batch (copy-and-swap) migration on SQLite would lose the expression index that
admits a single global row, since SQLite cannot reflect it.

Revision ID: mail_outbox_and_alerts
Revises: connection_session_details
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "mail_outbox_and_alerts"
down_revision: str | None = "connection_session_details"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def _org_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["org_id"],
        ["organization.id"],
        name=op.f(f"fk_{table}_org_id_organization"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.add_column("smtp_settings", sa.Column("tls_mode", sa.String(length=16), nullable=True))
    op.add_column(
        "smtp_settings",
        sa.Column("verify_certificate", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.add_column("smtp_settings", sa.Column("ca_certificate", sa.Text(), nullable=True))

    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("to", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _now("next_attempt_at"),
        _timestamp("claimed_until"),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("last_outcome", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        _now("created_at"),
        _timestamp("sent_at"),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed')", name=op.f("ck_mail_outbox_status")
        ),
        _org_fk("mail_outbox"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    op.create_index(
        "ix_mail_outbox_status_next_attempt_at", "mail_outbox", ["status", "next_attempt_at"]
    )
    op.create_index("ix_mail_outbox_org_id_created_at", "mail_outbox", ["org_id", "created_at"])

    op.create_table(
        "org_invitation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("lookup", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by_user_id", sa.Integer(), nullable=True),
        _now("created_at"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _timestamp("accepted_at"),
        sa.Column("accepted_by_user_id", sa.Integer(), nullable=True),
        _timestamp("revoked_at"),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_org_invitation_role")
        ),
        _org_fk("org_invitation"),
        sa.ForeignKeyConstraint(
            ["invited_by_user_id"],
            ["user.id"],
            name=op.f("fk_org_invitation_invited_by_user_id_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["accepted_by_user_id"],
            ["user.id"],
            name=op.f("fk_org_invitation_accepted_by_user_id_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_invitation")),
        sa.UniqueConstraint("lookup", name=op.f("uq_org_invitation_lookup")),
    )
    op.create_index(op.f("ix_org_invitation_org_id"), "org_invitation", ["org_id"])

    op.create_table(
        "org_alert_settings",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("offline_threshold_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("debounce_seconds", sa.Integer(), server_default="3600", nullable=False),
        _timestamp("enabled_at"),
        _now("updated_at"),
        sa.CheckConstraint(
            "offline_threshold_seconds >= 0",
            name=op.f("ck_org_alert_settings_offline_threshold_seconds"),
        ),
        sa.CheckConstraint(
            "debounce_seconds >= 0", name=op.f("ck_org_alert_settings_debounce_seconds")
        ),
        _org_fk("org_alert_settings"),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_org_alert_settings")),
    )

    op.create_table(
        "device_alert_state",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("alert_open", sa.Boolean(), server_default=sa.false(), nullable=False),
        _timestamp("offline_since"),
        _timestamp("last_alert_at"),
        _now("updated_at"),
        _org_fk("device_alert_state"),
        sa.PrimaryKeyConstraint("org_id", "peer_id", name=op.f("pk_device_alert_state")),
    )


def downgrade() -> None:
    op.drop_table("device_alert_state")
    op.drop_table("org_alert_settings")
    op.drop_index(op.f("ix_org_invitation_org_id"), table_name="org_invitation")
    op.drop_table("org_invitation")
    op.drop_index("ix_mail_outbox_org_id_created_at", table_name="mail_outbox")
    op.drop_index("ix_mail_outbox_status_next_attempt_at", table_name="mail_outbox")
    op.drop_table("mail_outbox")
    # SQLite (3.35+) and PostgreSQL both drop a plain column in place, keeping the
    # single-global-row expression index that a batch table copy would lose.
    op.drop_column("smtp_settings", "ca_certificate")
    op.drop_column("smtp_settings", "verify_certificate")
    op.drop_column("smtp_settings", "tls_mode")
