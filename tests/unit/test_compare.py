"""Baseline vs candidate: evidence from metric frames (rollout/evidence.py), the statistics
(rollout/compare.py) and the capacity check (rollout/capacity.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rollout import metrics
from rollout.capacity import (
    capacity_latency_ms,
    check_capacity,
    peak_live_per_minute,
    refused_share,
)
from rollout.compare import (
    compare_errors,
    compare_latency,
    evidence_needed,
    newcombe_interval,
    p_text,
    percent_text,
    requests_needed,
    two_proportion_p,
    wilson_interval,
)
from rollout.endpoints import DeploymentView
from rollout.evidence import Evidence, evidence_from_metrics

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WINDOW = metrics.Window(T0, T0 + timedelta(minutes=3), timedelta(minutes=1))


# --- frames shaped as rollout.metrics returns them ------------------------------------------


def _time(minute: int) -> pd.Timestamp:
    return pd.Timestamp(T0 + timedelta(minutes=minute))


def requests_frame(rows: list[tuple[int, str, str, float]]) -> Any:
    """(minute, deployment, traffic_type, count) -> REQUEST_COLUMNS, value per minute."""
    frame = pd.DataFrame(
        [(_time(m), d, t, metrics.REQUESTS, float(n), float(n)) for m, d, t, n in rows],
        columns=metrics.REQUEST_COLUMNS,
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def status_frame(rows: list[tuple[int, str, str, str, float]], codes: bool = False) -> Any:
    """(minute, deployment, traffic_type, status class or '424', count) -> STATUS_COLUMNS
    ('424' rows are in class 4xx); without `codes`, no status_code column (a frame from a
    query that did not split by status code)."""
    frame = pd.DataFrame(
        [
            (
                *(_time(m), d, t, "4xx" if cls == "424" else cls),
                "424" if cls == "424" else cls[0] + "00",
                *(metrics.REQUESTS, n, n),
            )
            for m, d, t, cls, n in rows
        ],
        columns=metrics.STATUS_COLUMNS,
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame if codes else frame.drop(columns="status_code")


def latency_frame(rows: list[tuple[int, str, str, str, float]]) -> Any:
    """(minute, deployment, traffic_type, P50|P95|P99, ms) -> LATENCY_COLUMNS."""
    frame = pd.DataFrame(
        [(_time(m), d, t, p, v) for m, d, t, p, v in rows], columns=metrics.LATENCY_COLUMNS
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


EMPTY_REQUESTS = pd.DataFrame(columns=metrics.REQUEST_COLUMNS)
EMPTY_STATUS = pd.DataFrame(columns=metrics.STATUS_COLUMNS)
EMPTY_LATENCY = pd.DataFrame(columns=metrics.LATENCY_COLUMNS)


def evidence(**kwargs: Any) -> Evidence:
    return evidence_from_metrics(
        kwargs.pop("deployment", "green"),
        requests=kwargs.pop("requests", EMPTY_REQUESTS),
        status=kwargs.pop("status", EMPTY_STATUS),
        latency=kwargs.pop("latency", EMPTY_LATENCY),
        window=WINDOW,
    )


def served(name: str, requests: int, errors: int = 0, **kwargs: Any) -> Evidence:
    """Evidence of `requests` live requests, `errors` of them 5xx, over an hour."""
    return Evidence(
        name, minutes=60, live=requests, classified=requests, errors_5xx=errors, **kwargs
    )


# --- evidence from frames ---------------------------------------------------------------------


def test_evidence_counts_live_and_mirrored_requests_apart() -> None:
    frame = requests_frame(
        [(0, "green", "live", 3), (0, "green", "mirror", 10), (1, "green", "mirror", 7),
         (0, "blue", "live", 90)]
    )  # fmt: skip
    found = evidence(requests=frame)
    assert (found.live, found.mirrored, found.unsplit, found.requests) == (3, 17, 0, 20)
    assert found.minutes == 3
    assert found.per_minute == pytest.approx(20 / 3)


def test_traffic_without_a_mirror_dimension_is_counted_as_unsplit() -> None:
    found = evidence(requests=requests_frame([(0, "green", metrics.ALL, 12)]))
    assert (found.live, found.mirrored, found.unsplit) == (0, 0, 12)


def test_evidence_counts_errors_by_status_class() -> None:
    frame = status_frame(
        [(0, "green", "live", "2xx", 90), (0, "green", "live", "4xx", 4),
         (1, "green", "mirror", "5xx", 5), (1, "green", "live", "unknown", 1),
         (1, "blue", "live", "5xx", 50)]
    )  # fmt: skip
    found = evidence(status=frame)
    assert (found.classified, found.errors_4xx, found.errors_5xx, found.errors_other) == (
        100,
        4,
        5,
        1,
    )
    assert found.errors == 10
    assert found.error_rate == pytest.approx(0.1)


def test_model_errors_are_counted_only_when_the_frame_has_status_codes() -> None:
    rows = [(0, "green", "live", "2xx", 90.0), (0, "green", "live", "424", 6.0)]
    assert evidence(status=status_frame(rows)).model_errors is None
    with_codes = evidence(status=status_frame(rows, codes=True))
    assert with_codes.model_errors == 6
    assert with_codes.errors_4xx == 6


def test_deployment_names_are_matched_whatever_their_case() -> None:
    found = evidence(deployment="Green", requests=requests_frame([(0, "green", "live", 5)]))
    assert found.live == 5


def test_a_window_percentile_is_weighted_by_the_requests_in_each_bucket() -> None:
    requests = requests_frame([(0, "green", "live", 90), (1, "green", "live", 10)])
    latency = latency_frame(
        [(0, "green", "live", "P95", 100.0), (1, "green", "live", "P95", 200.0),
         (0, "green", "live", "P50", 40.0)]
    )  # fmt: skip
    found = evidence(requests=requests, latency=latency)
    assert found.p95_ms == pytest.approx(110.0)
    assert found.p50_ms == pytest.approx(40.0)
    assert found.p99_ms is None


def test_percentiles_without_request_counts_are_averaged_alike() -> None:
    latency = latency_frame(
        [(0, "green", "mirror", "P95", 100.0), (1, "green", "mirror", "P95", 300.0)]
    )
    assert evidence(latency=latency).p95_ms == pytest.approx(200.0)


def test_peak_per_minute_is_the_busiest_bucket_over_traffic_types() -> None:
    frame = requests_frame(
        [(0, "green", "live", 3), (0, "green", "mirror", 10), (1, "green", "mirror", 7)]
    )
    assert evidence(requests=frame).peak_per_minute == 13


def test_empty_frames_give_evidence_of_nothing() -> None:
    found = evidence()
    assert found.requests == found.classified == found.errors == 0
    assert found.error_rate is None
    assert found.p95_ms is None
    assert found.peak_per_minute == 0


# --- words -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "text"), [(0.0, "0%"), (0.021, "2.1%"), (0.00042, "0.042%"), (1.0, "100.0%")]
)
def test_a_small_rate_is_never_shown_as_zero(rate: float, text: str) -> None:
    assert percent_text(rate) == text


@pytest.mark.parametrize(
    ("p", "text"), [(0.61, "p = 0.61"), (0.0432, "p = 0.043"), (0.0004, "p < 0.001")]
)
def test_p_values_read_as_the_issue_shows_them(p: float, text: str) -> None:
    assert p_text(p) == text


# --- intervals -------------------------------------------------------------------------------


def test_wilson_interval_of_no_errors_is_not_a_point() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_newcombe_interval_matches_newcombes_own_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, method 10: 56/70 − 48/80.
    low, high = newcombe_interval((56, 70), (48, 80))
    assert (low, high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_a_wilson_interval_holds_the_observed_rate(sample: tuple[int, int]) -> None:
    errors, n = sample
    low, high = wilson_interval(errors, n)
    assert 0 <= low <= errors / n + 1e-12
    assert errors / n - 1e-12 <= high <= 1


counts = st.integers(1, 5_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(counts, counts)
def test_a_newcombe_interval_holds_the_observed_difference(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    low, high = newcombe_interval(a, b)
    d = a[0] / a[1] - b[0] / b[1]
    assert -1 - 1e-9 <= low <= d + 1e-9 <= high + 2e-9 <= 1 + 3e-9


# --- error rates -----------------------------------------------------------------------------


def test_a_clearly_higher_error_rate_is_named_with_both_rates() -> None:
    found = compare_errors(served("blue", 10_877, 33), served("green", 1_204, 25))
    assert found.finding == "higher"
    assert found.words == "green's error rate is higher: 2.1% vs 0.3% (p < 0.001)"
    assert found.difference == pytest.approx(25 / 1204 - 33 / 10877)
    assert found.interval is not None and found.interval[0] > 0


def test_no_difference_says_so_with_the_p_value_and_the_requests() -> None:
    found = compare_errors(served("blue", 10_877, 100), served("green", 1_204, 12))
    assert found.finding == "no difference"
    assert found.p_value is not None and found.p_value > 0.05
    assert found.words == (
        f"no evidence of a difference ({p_text(found.p_value)}, 1,204 vs 10,877 requests)"
    )


def test_a_lower_error_rate_is_named_lower() -> None:
    found = compare_errors(served("blue", 5_000, 250), served("green", 5_000, 50))
    assert found.finding == "lower"
    assert found.words.startswith("green's error rate is lower: 1.0% vs 5.0%")


def test_tiny_samples_get_no_p_value_but_a_reason() -> None:
    found = compare_errors(served("blue", 10_877, 33), served("green", 12, 3))
    assert found.finding == "too few requests"
    assert found.p_value is None and found.interval is None
    assert "green has 12, blue 10,877" in found.words
    assert "at least 30 each" in found.words


def test_no_errors_on_either_side_is_no_difference_with_p_one() -> None:
    found = compare_errors(served("blue", 500), served("green", 400))
    assert (found.finding, found.p_value) == ("no difference", 1.0)


def test_identical_rates_are_no_difference() -> None:
    found = compare_errors(served("blue", 4_000, 40), served("green", 1_000, 10))
    assert found.finding == "no difference"
    assert found.p_value == pytest.approx(1.0)
    assert found.difference == 0


def test_fishers_exact_test_is_used_when_errors_are_rare() -> None:
    p, test = two_proportion_p((3, 200), (0, 300))
    assert test == "Fisher's exact test"
    assert p == pytest.approx(0.0633, abs=1e-3)


def test_the_z_test_is_used_when_every_cell_is_large_enough() -> None:
    p, test = two_proportion_p((60, 1000), (30, 1000))
    assert test == "z-test"
    assert p == pytest.approx(0.0013, abs=2e-4)


def test_error_kinds_are_compared_apart() -> None:
    blue = Evidence("blue", live=1000, classified=1000, errors_4xx=50, model_errors=0)
    green = Evidence("green", live=1000, classified=1000, errors_4xx=50, model_errors=40)
    assert compare_errors(blue, green, kind="4xx").finding == "no difference"
    assert compare_errors(blue, green, kind="model").finding == "higher"
    assert compare_errors(blue, green, kind="5xx").p_value == 1.0


def test_model_errors_not_counted_are_not_compared() -> None:
    found = compare_errors(served("blue", 1000), served("green", 1000), kind="model")
    assert found.p_value is None
    assert "not counted" in found.words


@given(counts, counts, st.sampled_from([0.01, 0.05, 0.1]))
def test_a_difference_is_claimed_only_below_alpha(
    a: tuple[int, int], b: tuple[int, int], alpha: float
) -> None:
    found = compare_errors(served("blue", b[1], b[0]), served("green", a[1], a[0]), alpha=alpha)
    if found.finding in ("higher", "lower"):
        assert found.p_value is not None and found.p_value < alpha
    if found.p_value is not None:
        assert 0 <= found.p_value <= 1
    else:
        assert min(a[1], b[1]) < 30


# --- latency ---------------------------------------------------------------------------------


def test_latency_ratio_compares_p95_and_p50() -> None:
    found = compare_latency(
        served("blue", 500, p50_ms=50.0, p95_ms=130.0),
        served("green", 500, p50_ms=60.0, p95_ms=240.0),
    )
    assert found.p95_ratio == pytest.approx(240 / 130)
    assert found.p50_ratio == pytest.approx(1.2)
    assert found.enough and found.note == ""
    assert found.words == "green's P95 is 1.85× blue's (240 ms vs 130 ms); P50 1.20×"


def test_latency_from_few_requests_carries_a_note() -> None:
    found = compare_latency(served("blue", 500, p95_ms=100.0), served("green", 8, p95_ms=90.0))
    assert not found.enough
    assert "green has 8" in found.note


def test_latency_without_samples_has_no_ratio() -> None:
    found = compare_latency(served("blue", 500, p95_ms=100.0), served("green", 0))
    assert found.p95_ratio is None and not found.enough


# --- how much more evidence ------------------------------------------------------------------


def test_requests_needed_matches_the_textbook_formula() -> None:
    # 5% vs 10%, alpha 0.05 two-sided, power 0.8: 435 per group (no continuity correction)
    assert requests_needed(0.05, 0.05) == (435, 435)


def test_fewer_candidate_requests_are_needed_when_the_baseline_has_more() -> None:
    equal, _ = requests_needed(0.003, 0.01)
    lopsided, baseline = requests_needed(0.003, 0.01, ratio=9.0)
    assert lopsided < equal
    assert baseline == pytest.approx(9 * lopsided, abs=9)


@given(st.floats(0, 0.5), st.floats(0.001, 0.2), st.floats(0.001, 0.2))
def test_a_smaller_degradation_needs_at_least_as_many_requests(
    rate: float, small: float, large: float
) -> None:
    assume(small < large)
    assert requests_needed(rate, small)[0] >= requests_needed(rate, large)[0]


def test_evidence_needed_says_how_many_more_requests_and_minutes() -> None:
    blue = served("blue", 10_877, 33)
    green = Evidence("green", minutes=60, mirrored=120, classified=120)
    found = evidence_needed(blue, green)
    n_c, _ = requests_needed(33 / 10877, 0.01, ratio=10_877 / 120)
    assert found.candidate_more == n_c - 120
    # the slower side sets the wait: green at 2 requests/min, blue at 10,877/h
    wait = max(found.candidate_more / 2.0, found.baseline_more / (10_877 / 60))
    assert found.minutes == pytest.approx(wait)
    assert found.words.startswith(
        f"{found.candidate_more:,} more green requests and {found.baseline_more:,} more blue "
        f"requests (about {int(-(-wait // 1))} min at the current rate)"
    )
    assert found.words.endswith("to detect +1.0 pp of errors (alpha 0.05, power 0.8)")


def test_evidence_needed_has_no_end_when_the_candidate_gets_no_traffic() -> None:
    found = evidence_needed(served("blue", 1000, 3), Evidence("green", minutes=60))
    assert found.minutes is None
    assert "no end at the current rate" in found.words


def test_enough_evidence_needs_no_more() -> None:
    found = evidence_needed(served("blue", 100_000, 300), served("green", 100_000, 300))
    assert (found.candidate_more, found.baseline_more, found.minutes) == (0, 0, 0.0)
    assert found.words.startswith("enough requests")


def test_a_degradation_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="degradation is 0"):
        requests_needed(0.01, 0)


# --- capacity --------------------------------------------------------------------------------


def deployment(name: str = "green", instances: int = 1, concurrent: int | None = 1) -> Any:
    return DeploymentView(name, "Succeeded", "model:1", "Standard_DS3_v2", instances, 0, 0,
                          5000, concurrent)  # fmt: skip


def test_one_instance_for_two_requests_in_flight_expects_429s() -> None:
    found = check_capacity(deployment(), share=100, peak_per_minute=120, latency_ms=1000)
    assert found.level == "overload"
    assert found.in_flight == pytest.approx(2.0)
    assert found.words.startswith(
        "green has 1 instance for about 2 requests in flight at peak; "
        "expect 429s — scale green first, to 5 instances"
    )
    assert found.suggested_instances == 5
    assert (found.slots, found.limit) == (1, 2)


def test_the_share_about_to_move_scales_the_load() -> None:
    found = check_capacity(deployment(), share=10, peak_per_minute=120, latency_ms=1000)
    assert found.in_flight == pytest.approx(0.2)
    assert found.level != "ok"  # one slot and one place in the queue: bursts are refused


def test_light_traffic_on_one_slot_is_enough_and_says_what_bursts_may_cost() -> None:
    # 0.06 requests in flight on one slot: M/M/1/2 refuses 0.06² / (1 + 0.06 + 0.06²) = 0.34%
    found = check_capacity(deployment(), share=10, peak_per_minute=60, latency_ms=600)
    assert found.in_flight == pytest.approx(0.06)
    assert found.refused == pytest.approx(0.0036 / 1.0636)
    assert found.level == "ok"
    assert "enough, bursts may get 0.3% 429s" in found.words


def test_a_tight_deployment_gives_the_share_refused_and_an_instance_count() -> None:
    found = check_capacity(deployment(), share=15, peak_per_minute=60, latency_ms=600)
    assert found.in_flight == pytest.approx(0.09)  # refuses 0.74%
    assert found.level == "tight"
    assert "bursts may get 429s (about 0.7% of requests) — consider 2 instances" in found.words


def test_enough_instances_are_enough() -> None:
    found = check_capacity(
        deployment(instances=4, concurrent=2), share=100, peak_per_minute=60, latency_ms=200
    )
    assert found.level == "ok"
    assert found.suggested_instances is None
    assert found.words.startswith(
        "green has 4 instances × 2 concurrent requests for about 0.2 requests in flight"
    )


def test_unset_concurrency_is_azures_default_of_one() -> None:
    found = check_capacity(deployment(concurrent=None), share=50, peak_per_minute=1, latency_ms=1)
    assert found.max_concurrent == 1


def test_without_traffic_the_load_is_unknown() -> None:
    found = check_capacity(deployment(), share=100, peak_per_minute=0, latency_ms=None)
    assert found.level == "unknown"
    assert found.in_flight is None
    assert "not enough traffic" in found.words


def test_refused_share_of_a_single_slot_at_full_load_is_a_third() -> None:
    # M/M/1/2 at offered load 1: states 0, 1, 2 equally likely
    assert refused_share(1.0, 1) == pytest.approx(1 / 3)


@given(st.floats(0.01, 500), st.integers(1, 400))
def test_more_slots_never_refuse_more(offered: float, slots: int) -> None:
    assert refused_share(offered, slots + 1) <= refused_share(offered, slots) + 1e-12


@given(st.floats(0.01, 500), st.floats(0.01, 500), st.integers(1, 400))
def test_more_load_never_refuses_less(a: float, b: float, slots: int) -> None:
    low, high = sorted((a, b))
    assert refused_share(low, slots) <= refused_share(high, slots) + 1e-12


def test_peak_live_rate_leaves_out_mirrored_copies_and_excluded_deployments() -> None:
    frame = requests_frame(
        [(0, "blue", "live", 100), (0, "green", "mirror", 10), (1, "blue", "live", 80),
         (1, "green", "live", 30), (1, "Green", metrics.ALL, 50)]
    )  # fmt: skip
    assert peak_live_per_minute(frame) == 160
    assert peak_live_per_minute(frame, exclude=["green"]) == 100
    assert peak_live_per_minute(EMPTY_REQUESTS) == 0


def test_capacity_latency_is_the_candidates_once_it_has_enough_requests() -> None:
    blue = served("blue", 1000, p95_ms=100.0)
    assert capacity_latency_ms(served("green", 10, p95_ms=300.0), blue) == 100.0
    assert capacity_latency_ms(served("green", 500, p95_ms=300.0), blue) == 300.0
    assert capacity_latency_ms(served("green", 0), served("blue", 0)) is None
