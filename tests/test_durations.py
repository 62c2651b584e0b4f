"""Human durations for the CLI: ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` and bare seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiremesh.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        ("0.5s", timedelta(milliseconds=500)),
        (" 7d ", timedelta(days=7)),
        ("5 m", timedelta(minutes=5)),
    ],
)
def test_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("1", 1), ("2.25", 2.25)])
def test_a_bare_number_is_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["", " ", "7x", "d", "h7", "7 days", "7dd", "1e3", "1_000", "5M", "inf", "nan", "7d3h", "--"],
)
def test_garbage_is_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as raised:
        parse_duration(text)
    assert "7d" in str(raised.value)


@pytest.mark.parametrize("text", ["0", "0s", "0.0h", "0w"])
def test_zero_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["-5", "-1h", "- 3d", "+5m"])
def test_negative_or_signed_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_a_duration_that_rounds_to_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration("0.0000001s")


def test_a_huge_duration_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration("99999999999999999999w")


@given(
    amount=st.integers(min_value=1, max_value=10_000),
    unit=st.sampled_from(["", "s", "m", "h", "d", "w"]),
)
def test_integer_amounts_scale_by_their_unit(amount: int, unit: str) -> None:
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_duration(f"{amount}{unit}") == timedelta(seconds=amount * factor)


def test_only_ascii_digits_count() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("\u0663d")
