from __future__ import annotations

from pathlib import Path

import pytest

from wiremesh.protocol import (
    CLOSE_REASONS,
    MAX_CLOSE_REASON_BYTES,
    CloseCode,
    ProtocolError,
    close_reason,
    should_reconnect,
)

EXPECTED_VALUES = {
    "NORMAL": 1000,
    "GOING_AWAY": 1001,
    "MESSAGE_TOO_BIG": 1009,
    "INTERNAL_ERROR": 1011,
    "SERVICE_RESTART": 1012,
    "MALFORMED": 4000,
    "UNKNOWN_TYPE": 4001,
    "NOT_AUTHENTICATED": 4002,
    "AUTH_FAILED": 4003,
    "DEVICE_REVOKED": 4004,
    "SUPERSEDED": 4005,
    "HEARTBEAT_TIMEOUT": 4006,
    "RATE_LIMITED": 4007,
    "UNSUPPORTED_VERSION": 4008,
    "AUTH_TIMEOUT": 4009,
}


def test_close_code_values_are_the_documented_wire_values() -> None:
    assert {code.name: int(code) for code in CloseCode} == EXPECTED_VALUES


@pytest.mark.parametrize("code", list(CloseCode))
def test_every_code_has_a_distinct_reason_that_fits_a_close_frame(code: CloseCode) -> None:
    reason = close_reason(code)
    assert reason == CLOSE_REASONS[code]
    assert reason
    assert len(reason.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES
    assert list(CLOSE_REASONS.values()).count(reason) == 1


def test_unknown_code_gets_a_generic_reason() -> None:
    assert close_reason(4999) == "connection closed"


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (CloseCode.AUTH_FAILED, False),
        (CloseCode.DEVICE_REVOKED, False),
        (CloseCode.UNSUPPORTED_VERSION, False),
        (CloseCode.NORMAL, True),
        (CloseCode.GOING_AWAY, True),
        (CloseCode.SERVICE_RESTART, True),
        (CloseCode.SUPERSEDED, True),
        (CloseCode.HEARTBEAT_TIMEOUT, True),
        (CloseCode.RATE_LIMITED, True),
        (CloseCode.AUTH_TIMEOUT, True),
        (1006, True),  # abnormal closure: no close frame at all
        (4999, True),  # a code from a newer server
    ],
)
def test_should_reconnect(code: int, reconnect: bool) -> None:
    assert should_reconnect(code) is reconnect


def test_protocol_error_uses_the_fixed_reason_and_keeps_detail_out_of_it() -> None:
    exc = ProtocolError(CloseCode.MALFORMED, detail="credential: string_too_long")
    assert exc.code is CloseCode.MALFORMED
    assert exc.reason == close_reason(CloseCode.MALFORMED)
    assert "credential" not in exc.reason
    assert "MALFORMED" in str(exc)
    assert "credential" in str(exc)


def test_protocol_error_cuts_long_reasons_without_splitting_characters() -> None:
    exc = ProtocolError(CloseCode.INTERNAL_ERROR, "é" * 100)  # 200 bytes of UTF-8
    encoded = exc.reason.encode("utf-8")
    assert len(encoded) <= MAX_CLOSE_REASON_BYTES
    assert exc.reason == "é" * 61


def test_protocol_doc_lists_every_close_code_with_its_reason() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| 4")}
    rows |= {
        line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| 1")
    }
    for code in CloseCode:
        row = rows[str(int(code))]
        assert f"`{code.name}`" in row
        assert close_reason(code) in row
        assert ("**no**" in row) is (not should_reconnect(code))
