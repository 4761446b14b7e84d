"""Filtering a deployment's log tail: case-insensitive substring, counted."""

from __future__ import annotations

from rollout.log_lines import filter_lines, split_lines

LOG = (
    "2026-12-02 04:01:00 INFO Starting instance blue-0\n"
    "2026-12-02 04:01:02 INFO model 1: init complete\n"
    "2026-12-02 04:01:05 INFO model 1: request received\n"
    "2026-12-02 04:01:06 ERROR model 1: Request Received but the input is malformed\n"
)


def test_the_filter_keeps_the_lines_with_the_text_in_any_case() -> None:
    shown = filter_lines(LOG, "request RECEIVED")
    assert shown.lines == tuple(LOG.splitlines()[2:])
    assert shown.total == 4
    assert shown.summary == '2 of 4 lines match "request RECEIVED"'


def test_no_filter_shows_every_line() -> None:
    for query in ("", "   "):
        shown = filter_lines(LOG, query)
        assert shown.lines == tuple(LOG.splitlines())
        assert shown.summary == "4 lines"


def test_a_filter_that_matches_nothing_says_so() -> None:
    shown = filter_lines(LOG, "timeout")
    assert shown.lines == ()
    assert shown.summary == '0 of 4 lines match "timeout"'


def test_the_text_is_the_matching_lines_joined() -> None:
    assert filter_lines(LOG, "init").text == "2026-12-02 04:01:02 INFO model 1: init complete"


def test_one_line_is_counted_in_the_singular() -> None:
    assert filter_lines("only line\n", "").summary == "1 line"
    assert filter_lines("only line\n", "only").summary == '1 of 1 line matches "only"'


def test_an_empty_log_has_no_lines() -> None:
    assert split_lines("") == []
    assert split_lines("\n\n") == []
    assert filter_lines("", "x").total == 0
