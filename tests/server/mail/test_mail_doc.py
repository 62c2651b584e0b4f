"""docs/mail.md and the README state the outbox defaults the server really uses, and the
server refuses a claim lease shorter than the longest send."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from wiremesh.server.config import MAIL_COMMANDS_PER_SEND, Settings

ROOT = Path(__file__).parents[3]
DOC = (ROOT / "docs" / "mail.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEFAULTS = Settings.model_fields

DOCUMENTED = {
    "mail_poll_interval": r"`WIREMESH_MAIL_POLL_INTERVAL`, (\d+) s",
    "mail_max_in_flight": r"`WIREMESH_MAIL_MAX_IN_FLIGHT` \((\d+)\)",
    "mail_max_in_flight_per_org": r"`WIREMESH_MAIL_MAX_IN_FLIGHT_PER_ORG` \((\d+)\)",
    "mail_connect_timeout": r"`WIREMESH_MAIL_CONNECT_TIMEOUT` \| `(\d+)` s",
    "mail_greeting_timeout": r"`WIREMESH_MAIL_GREETING_TIMEOUT` \| `(\d+)` s",
    "mail_command_timeout": r"`WIREMESH_MAIL_COMMAND_TIMEOUT` \| `(\d+)` s",
    "mail_claim_lease": r"`WIREMESH_MAIL_CLAIM_LEASE`, (\d+) s",
    "mail_shutdown_grace": r"`WIREMESH_MAIL_SHUTDOWN_GRACE` \((\d+) s\)",
    "mail_retry_base_delay": r"`WIREMESH_MAIL_RETRY_BASE_DELAY` \((\d+) s\)",
    "mail_max_attempts": r"`WIREMESH_MAIL_MAX_ATTEMPTS`\s+\((\d+)\)",
    "mail_give_up_after_hours": r"`WIREMESH_MAIL_GIVE_UP_AFTER_HOURS` \((\d+)\)",
    "mail_retention_days": r"`WIREMESH_MAIL_RETENTION_DAYS` \((\d+)\)",
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_docs_state_the_real_defaults(name: str) -> None:
    found = re.search(DOCUMENTED[name], DOC)
    assert found is not None, f"docs/mail.md does not state {name}"
    assert float(found.group(1)) == DEFAULTS[name].default
    assert f"WIREMESH_{name.upper()}".replace("WIREMESH_MAIL_", "_MAIL_") in README or (
        f"WIREMESH_{name.upper()}" in README
    )


def test_the_longest_send_in_the_doc_is_the_real_one() -> None:
    longest = (
        DEFAULTS["mail_connect_timeout"].default
        + DEFAULTS["mail_greeting_timeout"].default
        + MAIL_COMMANDS_PER_SEND * DEFAULTS["mail_command_timeout"].default
    )
    assert f"{MAIL_COMMANDS_PER_SEND} x command ({longest:.0f} s with the defaults)" in DOC


def test_a_lease_shorter_than_the_longest_send_is_refused() -> None:
    with pytest.raises(ValidationError, match="mail_claim_lease must be longer"):
        Settings(mail_claim_lease=200, mail_command_timeout=30)
    assert Settings(mail_claim_lease=200, mail_command_timeout=10).mail_claim_lease == 200
