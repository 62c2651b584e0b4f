"""Server URLs: normalizing a list, and the order and rounds in which they are tried."""

from __future__ import annotations

import pytest

from wiremesh.agent.servers import (
    InvalidServerURL,
    ServerRotation,
    normalize_server_url,
    normalize_server_urls,
)

A, B, C = "http://a.test", "http://b.test", "https://c.test/prefix"


@pytest.mark.parametrize("url", ["wiremesh.example.com", "ftp://host", "https://", "http://h/?x=1"])
def test_server_urls_must_be_http_or_https(url: str) -> None:
    with pytest.raises(InvalidServerURL, match="server URL"):
        normalize_server_url(url)


def test_a_list_is_normalized_in_order() -> None:
    assert normalize_server_urls([" http://b.test/ ", "https://c.test/prefix/", A]) == (B, C, A)


@pytest.mark.parametrize(
    ("urls", "problem"),
    [
        ([], "at least one server URL"),
        ([A, B, "http://a.test/"], "http://a.test is listed twice"),
        ([A, "a.test"], "must look like"),
    ],
)
def test_an_unusable_list_is_refused(urls: list[str], problem: str) -> None:
    with pytest.raises(InvalidServerURL, match=problem):
        normalize_server_urls(urls)


def test_a_single_string_is_not_taken_for_a_list_of_letters() -> None:
    with pytest.raises(TypeError, match="one string"):
        normalize_server_urls(A)


def failures_until_backoff(rotation: ServerRotation) -> list[str]:
    """The servers that fail, one after another, until the rotation asks for a backoff."""
    tried = []
    while True:
        tried.append(rotation.current)
        if rotation.failed():
            return tried


def test_each_server_is_tried_once_before_a_backoff() -> None:
    rotation = ServerRotation([A, B, C])
    assert failures_until_backoff(rotation) == [A, B, C]
    assert rotation.current == A  # after the last comes the first
    assert failures_until_backoff(rotation) == [A, B, C]


def test_with_one_server_every_failure_is_a_round() -> None:
    rotation = ServerRotation([A])
    assert [rotation.failed() for _ in range(3)] == [True, True, True]
    assert rotation.current == A


def test_a_welcome_starts_a_new_round_from_the_server_that_worked() -> None:
    rotation = ServerRotation([A, B, C])
    assert not rotation.failed()  # A refused the connection
    rotation.connected()  # B welcomed the device
    # B's session ends (it goes away): C and A are tried at once, B again only after them.
    assert failures_until_backoff(rotation) == [B, C, A]
    assert rotation.current == B


def test_the_current_server_stays_next_when_the_list_changes() -> None:
    rotation = ServerRotation([A, B])
    rotation.failed()
    assert rotation.current == B
    assert rotation.replace([C, B])
    assert rotation.current == B
    assert rotation.urls == (C, B)
    assert failures_until_backoff(rotation) == [B, C]


def test_a_changed_list_gets_a_whole_round_and_starts_at_its_first_if_needed() -> None:
    rotation = ServerRotation([A, B])
    rotation.failed()  # A failed; B is next
    assert rotation.replace([C, A])  # B is gone
    assert rotation.current == C
    assert failures_until_backoff(rotation) == [C, A]


def test_the_same_list_changes_nothing() -> None:
    rotation = ServerRotation([A, B])
    rotation.failed()
    assert not rotation.replace([A, B])
    assert failures_until_backoff(rotation) == [B]  # the round A began goes on


def test_a_rotation_needs_a_server() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ServerRotation([])
    with pytest.raises(ValueError, match="at least one"):
        ServerRotation([A]).replace([])
