"""Which tables and columns a downgrade drops, learnt from a scratch SQLite database."""

from __future__ import annotations

from wiremesh.server.db.downgrade_loss import Dropped, dropped_by_downgrade


def test_the_mail_revision_drops_its_tables_and_the_smtp_tls_columns() -> None:
    dropped = dropped_by_downgrade("mail_outbox_and_alerts", "connection_session_details")
    assert [str(item) for item in dropped] == [
        "device_alert_state",
        "mail_outbox",
        "org_alert_settings",
        "org_invitation",
        "smtp_settings.ca_certificate",
        "smtp_settings.tls_mode",
        "smtp_settings.verify_certificate",
    ]


def test_a_relative_revision_and_an_index_only_downgrade() -> None:
    # unique_public_keys only drops an index: no data goes.
    assert dropped_by_downgrade("unique_public_keys", "-1") == []
    assert dropped_by_downgrade("server_replica_leases", "-1") == [Dropped("server_replica")]
