"""The route lookup the agent's roaming rests on, and when a change counts as a move."""

from __future__ import annotations

from wiremesh.agent.underlay import UnderlayWatch, route_source


def test_the_source_toward_a_local_address_is_found_without_sending() -> None:
    assert route_source("127.0.0.1") == "127.0.0.1"
    assert route_source("127.0.0.2") == "127.0.0.1"


def test_a_name_is_not_looked_up() -> None:
    """The session's peer address is always an address; a name would mean a DNS query on
    every tick."""
    assert route_source("server.example") is None


class Routes:
    """The source addresses a machine would use, changed by the test (a real lookup is
    exercised above and in the namespace tests, where addresses really move)."""

    def __init__(self, *sources: str | None) -> None:
        self.sources = list(sources)

    def __call__(self, remote: str) -> str | None:
        assert remote == "198.18.0.1"
        return self.sources.pop(0) if len(self.sources) > 1 else self.sources[0]


def test_a_new_source_address_is_a_move_from_the_one_the_session_began_with() -> None:
    watch = UnderlayWatch("198.18.0.1", Routes("198.18.0.11", "198.18.0.11", "198.18.0.60"))
    assert watch.moved() is None
    assert watch.moved() == ("198.18.0.11", "198.18.0.60")


def test_no_route_for_a_while_is_not_a_move_and_the_address_after_it_is() -> None:
    watch = UnderlayWatch("198.18.0.1", Routes("198.18.0.11", None, None, "198.18.0.60"))
    assert watch.moved() is None
    assert watch.moved() is None
    assert watch.moved() == ("198.18.0.11", "198.18.0.60")


def test_a_session_begun_without_a_route_takes_the_first_source_seen() -> None:
    watch = UnderlayWatch("198.18.0.1", Routes(None, "198.18.0.11", "198.18.0.11"))
    assert watch.moved() is None  # the baseline, not a move
    assert watch.baseline == "198.18.0.11"
    assert watch.moved() is None


def test_without_a_known_server_address_nothing_is_watched() -> None:
    assert UnderlayWatch(None, Routes("198.18.0.11")).moved() is None
