"""Comparing baseline's and candidate's predictions (rollout/predictions.py) and reading
their inputs (rollout/prediction_inputs.py): pure functions, no network."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.prediction_charts import differences_figure
from components.split import color_for
from rollout import plan_store
from rollout.errors import RolloutError
from rollout.mirrored import MirroredAnswer, MirroredRequest
from rollout.prediction_inputs import MAX_INPUTS, mirrored_pairs, parse_jsonl, sample_inputs
from rollout.predictions import Answer, Pair, Tolerance, compare_bodies, compare_pairs
from rollout.promotion import Plan


def ok(body: Any, latency: float = 10.0) -> Answer:
    return Answer(200, latency, body if isinstance(body, str) else json.dumps(body))


def pair(baseline: Answer, candidate: Answer, index: int = 1) -> Pair:
    return Pair(index, '{"data": []}', baseline, candidate)


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=5)
)
documents = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)
answers = st.builds(
    Answer,
    st.sampled_from([200, 200, 200, 0, 408, 424, 429, 500]),
    st.floats(0, 1000),
    documents.map(json.dumps),
)
tolerances = st.builds(Tolerance, st.floats(0, 10), st.floats(0, 1))


# --- the comparison of one pair -----------------------------------------------------------


def test_numbers_within_the_absolute_tolerance_agree() -> None:
    assert compare_bodies("[1.0, 2.0]", "[1.0005, 2]", Tolerance(absolute=1e-3, relative=0)).agrees
    assert not compare_bodies("[1.0]", "[1.002]", Tolerance(absolute=1e-3, relative=0)).agrees


def test_numbers_within_the_relative_tolerance_agree() -> None:
    within = Tolerance(absolute=0, relative=0.01)
    assert compare_bodies("[1000]", "[1009]", within).agrees
    assert not compare_bodies("[1000]", "[1011]", within).agrees


def test_an_int_and_the_same_float_agree() -> None:
    assert compare_bodies("[1]", "[1.0]", Tolerance(0, 0)).agrees


def test_labels_strings_bools_and_null_compare_exactly() -> None:
    tolerance = Tolerance(absolute=100, relative=1)
    assert not compare_bodies('{"label": "cat"}', '{"label": "dog"}', tolerance).agrees
    assert not compare_bodies("[true]", "[false]", tolerance).agrees
    assert not compare_bodies("[true]", "[1]", tolerance).agrees, "a bool is not a number"
    assert not compare_bodies("[null]", "[0]", tolerance).agrees
    verdict = compare_bodies('{"label": "cat"}', '{"label": "dog"}', tolerance)
    assert verdict.kind == "value" and verdict.paths == ("label",)


def test_a_missing_key_or_a_longer_list_is_a_structural_disagreement() -> None:
    missing = compare_bodies('{"a": 1, "b": 2}', '{"a": 1}', Tolerance())
    assert not missing.agrees and missing.kind == "structure" and missing.paths == ("b",)
    longer = compare_bodies("[1, 2]", "[1, 2, 3]", Tolerance())
    assert not longer.agrees and longer.kind == "structure" and longer.paths == ("[2]",)
    empty = compare_bodies("[]", "[1]", Tolerance())
    assert not empty.agrees and empty.kind == "structure"


def test_differences_are_candidate_minus_baseline_per_numeric_leaf() -> None:
    verdict = compare_bodies("[1.0, 5.0, 2.0]", "[1.5, 4.0, 2.0]", Tolerance())
    assert verdict.differences == (0.5, -1.0, 0.0)
    assert verdict.largest == 1.0
    assert verdict.paths == ("[0]", "[1]")


def test_a_body_that_is_not_json_compares_as_a_string() -> None:
    assert compare_bodies("oops", "oops", Tolerance()).agrees
    assert compare_bodies("oops", "other", Tolerance()).kind == "value"


# --- many pairs ---------------------------------------------------------------------------


def test_failures_are_counted_apart_per_side_and_never_agree() -> None:
    pairs = [
        pair(ok([1.0]), ok([1.0])),
        pair(ok([1.0]), Answer(500, 3.0, "boom")),
        pair(Answer(0, 0.0, "", "ConnectError: refused"), Answer(424, 4.0, "{}")),
        pair(ok([1.0]), ok([2.0])),
    ]
    found = compare_pairs(pairs)
    assert (found.compared, found.both_ok, found.agreed, found.disagreed) == (4, 2, 1, 1)
    assert (found.baseline_failed, found.candidate_failed) == (1, 2)
    assert found.failed_text() == "baseline failed 1, candidate failed 2 of 4"
    assert found.agreement == 0.25, "failed answers count against the agreement"
    assert found.candidate_statuses == ((424, 1), (500, 1))
    assert found.baseline_statuses == ((0, 1),)


def test_the_rows_that_differ_most_come_first_a_different_shape_or_label_above_numbers() -> None:
    pairs = [
        pair(ok([1.0]), ok([1.1]), 1),
        pair(ok([1.0]), ok([9.0]), 2),
        pair(ok({"label": "a"}), ok({"label": "b"}), 3),
        pair(ok([1.0]), ok([1.0, 2.0]), 4),
        pair(ok([1.0]), ok([1.0]), 5),
        pair(ok([1.0]), ok([4.0]), 6),
    ]
    found = compare_pairs(pairs, top=4)
    assert [row.index for row in found.top] == [4, 3, 2, 6]
    assert found.top[2].largest == 8.0
    assert found.top[2].baseline == "[1.0]" and found.top[2].candidate == "[9.0]"
    assert sorted(found.differences) == pytest.approx(sorted([0.1, 8.0, 0.0, 0.0, 3.0]))


def test_latency_per_side_is_over_the_answers_that_came_back() -> None:
    pairs = [pair(ok([1], 10.0 * i), ok([1], 100.0 + i)) for i in range(1, 11)]
    pairs.append(pair(Answer(0, 5000.0, "", "timeout"), Answer(500, 7.0, "x")))
    found = compare_pairs(pairs)
    assert found.baseline_latency.answered == 10, "no answer, no latency"
    assert found.baseline_latency.max_ms == 100.0
    assert found.baseline_latency.p50_ms == pytest.approx(55.0)
    assert found.candidate_latency.answered == 11
    assert found.candidate_latency.p95_ms == pytest.approx(109.5)


def test_a_cancelled_comparison_says_how_far_it_got() -> None:
    found = compare_pairs([pair(ok([1]), ok([1]))] * 312, planned=1000, cancelled=True)
    assert found.progress_text() == "cancelled after 312 of 1,000"
    assert compare_pairs([pair(ok([1]), ok([1]))] * 3).progress_text() == "compared 3 inputs"


def test_an_empty_comparison_has_no_agreement_rate() -> None:
    found = compare_pairs([])
    assert found.agreement is None and found.baseline_latency.p50_ms is None


@pytest.mark.parametrize(
    ("absolute", "relative", "words"),
    [
        (-1, 0, "the absolute tolerance must be a finite number ≥ 0, not -1"),
        (0, float("nan"), "the relative tolerance must be a finite number ≥ 0, not nan"),
        (float("inf"), 0, "the absolute tolerance must be a finite number ≥ 0, not inf"),
        ("0.1", 0, "the absolute tolerance must be a number, not '0.1'"),
    ],
)
def test_a_bad_tolerance_is_refused_naming_it_and_its_value(
    absolute: Any, relative: Any, words: str
) -> None:
    with pytest.raises(RolloutError, match=words):
        Tolerance(absolute, relative)


# --- properties ---------------------------------------------------------------------------


@given(st.lists(answers, max_size=20), tolerances)
def test_answers_compared_with_themselves_agree_whenever_they_answered(
    sides: list[Answer], tolerance: Tolerance
) -> None:
    found = compare_pairs([pair(a, a, i) for i, a in enumerate(sides)], tolerance)
    assert found.agreed == found.both_ok == sum(a.ok for a in sides)
    assert set(found.differences) <= {0.0}
    if found.both_ok == found.compared and sides:
        assert found.agreement == 1.0


@given(st.lists(st.tuples(answers, answers), max_size=20), tolerances)
def test_agreement_never_counts_a_failed_answer(
    sides: list[tuple[Answer, Answer]], tolerance: Tolerance
) -> None:
    found = compare_pairs([pair(b, c, i) for i, (b, c) in enumerate(sides)], tolerance)
    both_ok = sum(b.ok and c.ok for b, c in sides)
    assert found.agreed <= found.both_ok == both_ok
    assert found.agreed <= found.compared - max(found.baseline_failed, found.candidate_failed)


@given(st.lists(st.tuples(documents, documents), max_size=10), tolerances, tolerances)
def test_a_larger_tolerance_never_lowers_agreement(
    bodies: list[tuple[Any, Any]], one: Tolerance, other: Tolerance
) -> None:
    small = Tolerance(min(one.absolute, other.absolute), min(one.relative, other.relative))
    large = Tolerance(max(one.absolute, other.absolute), max(one.relative, other.relative))
    pairs = [pair(ok(b), ok(c), i) for i, (b, c) in enumerate(bodies)]
    assert compare_pairs(pairs, small).agreed <= compare_pairs(pairs, large).agreed


@given(documents, st.floats(-1e6, 1e6, allow_nan=False))
def test_a_shifted_number_differs_by_the_shift(document: Any, shift: float) -> None:
    verdict = compare_bodies(
        json.dumps([1.0, document]), json.dumps([1.0 + shift, document]), Tolerance()
    )
    assert verdict.differences[0] == pytest.approx(shift, abs=1e-9)


# --- inputs: the sample request and JSON Lines --------------------------------------------


def test_the_sample_request_is_one_input() -> None:
    inputs = sample_inputs('{"data": [[1, 2]]}')
    assert inputs.bodies == ('{"data": [[1, 2]]}',) and inputs.source == "sample request"
    with pytest.raises(RolloutError, match="not valid JSON"):
        sample_inputs("{nope")


def test_jsonl_skips_blank_lines_and_numbers_inputs_by_their_line() -> None:
    inputs = parse_jsonl(b'{"data": [1]}\n\n   \n{"data": [2]}\r\n', name="in.jsonl")
    assert inputs.bodies == ('{"data": [1]}', '{"data": [2]}')
    assert inputs.indexes == (1, 4)
    assert inputs.source == "in.jsonl" and not inputs.truncated


def test_a_jsonl_line_that_is_not_json_is_refused_naming_the_line_and_the_error() -> None:
    with pytest.raises(RolloutError) as raised:
        parse_jsonl('{"data": [1]}\n\n{"data": [2}\n', name="in.jsonl")
    assert str(raised.value) == (
        "line 3 of in.jsonl is not JSON: Expecting ',' delimiter at column 12"
    )


def test_an_empty_or_non_utf8_file_is_refused() -> None:
    with pytest.raises(RolloutError, match="no request bodies"):
        parse_jsonl("\n \n")
    with pytest.raises(RolloutError, match="not UTF-8"):
        parse_jsonl(b"\xff\xfe{}", name="x.jsonl")


def test_more_than_1000_inputs_are_refused_with_the_count_or_the_first_1000_taken() -> None:
    text = "\n".join(json.dumps({"data": [i]}) for i in range(1234)) + "\nnot json\n"
    with pytest.raises(RolloutError, match="has 1,235 request bodies; at most 1,000 are compared"):
        parse_jsonl(text, name="big.jsonl")
    first = parse_jsonl(text, name="big.jsonl", take_first=True)
    assert len(first.bodies) == MAX_INPUTS and first.total == 1235 and first.truncated
    assert first.bodies[-1] == '{"data": [999]}'


# --- inputs: the emulator's mirrored sample -------------------------------------------------


def _mirrored(
    live: str, mirror: str, live_body: str = "[1]", mirror_body: str = "[2]"
) -> MirroredRequest:
    return MirroredRequest(
        datetime.now(UTC),
        '{"data": []}',
        MirroredAnswer(live, 200, 5.0, live_body),
        MirroredAnswer(mirror, 200, 7.0, mirror_body),
    )


def test_mirrored_requests_map_each_side_by_deployment_and_skip_the_others() -> None:
    entries = [
        _mirrored("blue", "green"),
        _mirrored("Green", "blue", "[3]", "[4]"),
        _mirrored("blue", "red"),
    ]
    sample = mirrored_pairs(entries, "blue", "green")
    assert sample.skipped == 1 and sample.read == 3
    first, second = sample.pairs
    assert (first.baseline.body, first.candidate.body) == ("[1]", "[2]")
    assert (second.baseline.body, second.candidate.body) == ("[4]", "[3]")
    assert second.baseline.latency_ms == 7.0
    found = compare_pairs(sample.pairs, skipped=sample.skipped)
    assert found.differences == (1.0, -1.0) and found.skipped == 1


# --- the summary kept in the dashboard's store ----------------------------------------------


def test_a_finished_comparison_is_kept_next_to_the_plans(tmp_path: Path) -> None:
    store = tmp_path / "history.db"
    found = compare_pairs(
        [pair(ok([1.0]), ok([1.0])), pair(ok([1.0]), Answer(500, 1.0, "x"))],
        Tolerance(0.01, 0.001),
        planned=10,
        cancelled=True,
    )
    record = plan_store.ComparisonRecord.of(
        found,
        workspace="sub/rg/ws",
        endpoint="my-endpoint",
        baseline="blue",
        candidate="green",
        source="inputs.jsonl",
        at=1_800_000_000.0,
    )
    plan_store.record_comparison(record, path=store)
    plan_store.save_plan(Plan("my-endpoint", "blue", "green", workspace="sub/rg/ws"), path=store)
    assert plan_store.list_comparisons("sub/rg/ws", "MY-ENDPOINT", path=store) == [record]
    assert plan_store.list_comparisons("sub/rg/ws", "other", path=store) == []
    assert plan_store.list_comparisons("sub/rg/ws", "my-endpoint", since=2e9, path=store) == []
    assert (record.compared, record.planned, record.agreed, record.agreement) == (2, 10, 1, 0.5)
    assert (record.candidate_failed, record.absolute_tolerance, record.cancelled) == (1, 0.01, True)


# --- the histogram ------------------------------------------------------------------------


def test_the_histogram_draws_the_differences_in_the_candidates_colour() -> None:
    figure = differences_figure(
        [0.0, 0.0, 0.5, -2.0],
        baseline="blue",
        candidate="green",
        deployments=["blue", "green"],
        tolerance=Tolerance(absolute=1.0, relative=0),
    )
    (trace,) = figure.data
    assert trace.type == "histogram" and list(trace.x) == [0.0, 0.0, 0.5, -2.0]
    assert trace.marker.color == color_for("green")
    assert figure.layout.title.subtitle.text == (
        "4 values, 2 of them equal. 3 within the absolute tolerance 1."
    )


def test_the_histogram_without_numbers_says_so_in_the_figure() -> None:
    figure = differences_figure([], baseline="blue", candidate="green")
    assert not figure.data
    assert [a.text for a in figure.layout.annotations] == [
        "No numeric values in both answers to compare"
    ]
