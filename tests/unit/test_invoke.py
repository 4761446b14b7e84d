"""Pure helpers of rollout.invoke: request parsing, answer diffing, burst summaries."""

from __future__ import annotations

from collections import Counter

import pytest

from rollout.errors import RolloutError
from rollout.invoke import (
    ABSENT,
    BurstResult,
    InvokeResult,
    describe_status,
    diff_answers,
    flatten_json,
    parse_request,
    percentile,
    same_value,
    summarize_burst,
)


def _answer(body: str, status: int = 200, served_by: str | None = None) -> InvokeResult:
    return InvokeResult(status=status, latency_ms=10.0, served_by=served_by, body=body)


def test_invalid_json_is_refused_with_its_line_and_column() -> None:
    with pytest.raises(RolloutError, match=r"line 2, column 10"):
        parse_request('{"data":\n  [[1, 2,]]}')


def test_valid_json_is_sent_as_its_bytes() -> None:
    assert parse_request('{"data": [[1]]}') == b'{"data": [[1]]}'


def test_flatten_json_names_every_leaf_by_its_path() -> None:
    doc = {"scores": [1.5, {"label": "a"}], "empty": [], "ok": True}
    assert flatten_json(doc) == {
        "scores[0]": 1.5,
        "scores[1].label": "a",
        "empty": [],
        "ok": True,
    }
    assert flatten_json(3) == {"": 3}
    assert flatten_json([1, 2], "body") == {"body[0]": 1, "body[1]": 2}


def test_numbers_compare_within_a_tolerance_but_not_across_types() -> None:
    assert same_value(1, 1.0)
    assert same_value(10980.66360074929, 10980.663600749291)
    assert not same_value(10980.66, 4952.82)
    assert not same_value(True, 1)
    assert not same_value("1", 1)
    assert same_value(None, None)


def test_identical_answers_have_no_differences() -> None:
    diff = diff_answers({"blue": _answer("[1.0, 2.0]"), "green": _answer("[1.0, 2.0]")})
    assert diff.all_same
    assert diff.reference == "blue"
    assert diff.differences("green") == []
    assert [row.path for row in diff.rows] == ["status", "body[0]", "body[1]"]


def test_differing_values_are_marked_against_the_first_deployment() -> None:
    diff = diff_answers(
        {
            "blue": _answer("[10980.66, 4459.33]"),
            "green": _answer("[4952.82, 4459.33]"),
            "red": _answer("[10980.66, 4459.33]"),
        }
    )
    assert not diff.all_same
    assert diff.differences("green") == ["body[0]"]
    assert diff.differences("red") == []
    first = next(row for row in diff.rows if row.path == "body[0]")
    assert first.values == (10980.66, 4952.82, 10980.66)
    assert first.differs == (False, True, False)


def test_a_missing_value_and_a_different_status_are_differences() -> None:
    diff = diff_answers(
        {
            "blue": _answer("[1.0, 2.0]"),
            "green": _answer('{"error": "boom"}', status=424),
        }
    )
    assert diff.differences("green") == ["status", "body[0]", "body[1]", "body.error"]
    error = next(row for row in diff.rows if row.path == "body.error")
    assert error.values == (ABSENT, "boom")


def test_a_body_that_is_not_json_is_compared_as_text() -> None:
    diff = diff_answers({"a": _answer("hello"), "b": _answer("hello"), "c": _answer("bye")})
    assert diff.differences("b") == []
    assert diff.differences("c") == ["body"]


def test_a_transport_failure_is_compared_by_its_error() -> None:
    failed = InvokeResult(0, 5.0, None, "", error="ConnectError: refused")
    diff = diff_answers({"a": _answer("[1]"), "b": failed})
    assert diff.differences("b") == ["status", "body[0]", "error"]


def test_percentile_interpolates_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_burst_summary_counts_each_deployment_against_the_configured_split() -> None:
    result = BurstResult(
        sent=40,
        served=Counter({"blue": 35, "green": 3}),
        statuses=Counter({200: 38, 0: 2}),
        latencies_ms=[float(v) for v in range(40)],
        errors=Counter({"ConnectError": 2}),
    )
    summary = summarize_burst(result, {"blue": 90, "green": 10, "old": 0})
    assert [(r.deployment, r.served, r.expected_pct) for r in summary.shares] == [
        ("blue", 35, 90),
        ("green", 3, 10),
        ("old", 0, 0),
    ]
    assert summary.shares[0].served_pct == pytest.approx(100 * 35 / 38)
    assert summary.unattributed == 2
    assert summary.statuses == ((0, 2), (200, 38))
    assert summary.p50_ms == pytest.approx(19.5)
    assert summary.errors == (("ConnectError", 2),)


def test_burst_summary_without_an_expected_split_lists_who_served() -> None:
    result = BurstResult(sent=2, served=Counter({"green": 1, "blue": 1}))
    summary = summarize_burst(result)
    assert [(r.deployment, r.expected_pct) for r in summary.shares] == [
        ("blue", None),
        ("green", None),
    ]
    assert summary.p95_ms is None


def test_statuses_are_described_in_words() -> None:
    assert describe_status(429).startswith("429 too many pending requests")
    assert describe_status(200) == "200 OK"
    assert describe_status(599) == "599 server error"
