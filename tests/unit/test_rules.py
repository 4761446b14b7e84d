"""Azure's rules for online endpoints (rollout/rules.py)."""

from __future__ import annotations

import itertools
import pickle

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rollout.errors import RolloutError, RuleViolation
from rollout.rules import (
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_REQUEST_TIMEOUT_MS,
    MAX_DEPLOYMENTS_PER_ENDPOINT,
    MAX_MIRROR_PERCENT,
    MAX_REQUEST_TIMEOUT_MS,
    NAME_PATTERN,
    TrafficPlan,
    Violation,
    check_delete_deployment,
    check_instance_count,
    check_name,
    check_new_deployment,
    check_request_timeout,
    check_traffic,
    live_deployments,
    normalize_traffic,
    raise_for,
)

EP = "my-endpoint"
BLUE_GREEN = ("blue", "green")


def codes(violations: list[Violation]) -> list[str]:
    return [v.code for v in violations]


# --- strategies --------------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9]{2,12}", fullmatch=True)
valid_names = st.from_regex(r"[a-zA-Z](-?[a-zA-Z0-9]){2,31}", fullmatch=True).filter(
    lambda n: len(n) <= 32
)
deployment_sets = st.lists(names, min_size=1, max_size=8, unique_by=str.lower)


@st.composite
def split_of(draw: st.DrawFn, total: int, parts: int) -> list[int]:
    """``parts`` non-negative ints summing to ``total``."""
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=parts - 1, max_size=parts - 1)))
    edges = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(edges)]


@st.composite
def valid_traffic(draw: st.DrawFn) -> tuple[list[str], dict[str, int]]:
    deployments = draw(deployment_sets)
    shares = draw(split_of(100, len(deployments)))
    return deployments, dict(zip(deployments, shares, strict=True))


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "my-endpoint", "Blue2", "a1b", "a" * 32, "a-b-c"])
def test_valid_names_are_accepted(name: str) -> None:
    assert check_name("endpoint", name) == []
    assert check_name("deployment", name) == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ab", "is 2 characters long; it must be 3 to 32 characters"),
        ("a" * 33, "is 33 characters long"),
        ("1abc", "starts with '1'; it must start with a letter"),
        ("-abc", "starts with '-'"),
        ("my_endpoint", "contains '_'"),
        ("my endpoint", "contains ' '"),
        ("blué", "contains 'é'"),
        ("my--endpoint", "contains '--'"),
        ("endpoint-", "ends with a dash"),
        ("", "is 0 characters long"),
    ],
)
def test_invalid_names_are_refused_with_the_reason(name: str, fragment: str) -> None:
    found = check_name("endpoint", name)
    assert codes(found) and set(codes(found)) == {"InvalidName"}
    assert any(fragment in v.message for v in found), found
    assert all(f"endpoint name {name!r}" in v.message for v in found)


def test_a_trailing_newline_does_not_sneak_past_the_pattern() -> None:
    assert codes(check_name("deployment", "blue\n")) == ["InvalidName"]


def test_a_name_that_is_not_text_is_refused() -> None:
    found = check_name("deployment", 42)
    assert codes(found) == ["InvalidName"]
    assert "42" in found[0].message and "deployment name" in found[0].message


def test_every_problem_with_a_name_is_reported() -> None:
    found = check_name("deployment", "1_")
    messages = " | ".join(v.message for v in found)
    assert len(found) == 3
    assert "characters long" in messages
    assert "starts with '1'" in messages
    assert "contains '_'" in messages


def test_deployment_name_violations_name_the_deployment() -> None:
    assert check_name("deployment", "x")[0].deployment == "x"
    assert check_name("endpoint", "x")[0].deployment is None


@given(valid_names)
def test_any_name_of_letters_digits_and_single_dashes_is_accepted(name: str) -> None:
    assert check_name("deployment", name) == []


@given(st.text(max_size=40))
def test_a_name_is_accepted_exactly_when_it_matches_azures_pattern(name: str) -> None:
    expected = (
        NAME_PATTERN.fullmatch(name) is not None
        and 3 <= len(name) <= 32
        and "--" not in name
        and name.isascii()
    )
    assert (check_name("endpoint", name) == []) == expected


# --- live traffic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "traffic",
    [
        {"blue": 100},
        {"blue": 90, "green": 10},
        {"blue": 0, "green": 100},
        {},
        {"blue": 0},
        {"blue": 0, "green": 0},
    ],
)
def test_traffic_summing_to_100_or_0_is_accepted(traffic: dict[str, int]) -> None:
    assert check_traffic(EP, BLUE_GREEN, traffic) == []


def test_traffic_that_does_not_sum_to_100_is_refused_naming_endpoint_and_sum() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 80, "green": 10})
    assert codes(found) == ["InvalidTrafficSum"]
    assert found[0].message == (
        "traffic for endpoint 'my-endpoint' sums to 90; it must be 100 (or 0 to disable traffic)"
    )
    assert found[0].deployment is None


def test_traffic_above_100_in_total_is_refused() -> None:
    assert codes(check_traffic(EP, BLUE_GREEN, {"blue": 100, "green": 10})) == ["InvalidTrafficSum"]


def test_a_deployment_missing_from_the_map_has_zero_traffic() -> None:
    assert check_traffic(EP, ("blue", "green", "red"), {"green": 100}) == []


def test_traffic_to_an_unknown_deployment_is_refused_naming_it() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 90, "red": 10})
    assert codes(found) == ["UnknownDeployment"]
    assert found[0].deployment == "red"
    assert "'red'" in found[0].message and "'my-endpoint'" in found[0].message
    assert "'blue', 'green'" in found[0].message


def test_traffic_on_an_endpoint_without_deployments_says_so() -> None:
    found = check_traffic(EP, (), {"blue": 100})
    assert codes(found) == ["UnknownDeployment"]
    assert "its deployments are: none" in found[0].message


def test_traffic_keys_are_compared_case_insensitively() -> None:
    assert check_traffic(EP, ("Blue", "green"), {"blue": 50, "GREEN": 50}) == []


def test_the_same_deployment_twice_in_different_case_is_refused() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 50, "Blue": 50})
    assert codes(found) == ["DuplicateDeployment"]
    assert "'blue', 'Blue'" in found[0].message


@pytest.mark.parametrize("value", [10.0, 12.5, "10", True, None])
def test_a_traffic_value_that_is_not_a_whole_number_is_refused_naming_the_value(
    value: object,
) -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 90, "green": value})
    assert codes(found) == ["InvalidTrafficValue"]
    message = found[0].message
    assert f"is {value!r};" in message
    assert "'green'" in message and "'my-endpoint'" in message
    assert found[0].deployment == "green"


@pytest.mark.parametrize("value", [-10, 110])
def test_a_traffic_value_outside_0_to_100_is_refused(value: int) -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 100 - value, "green": value})
    assert "InvalidTrafficValue" in codes(found)
    assert any(f"is {value};" in v.message for v in found)


def test_every_traffic_violation_is_reported_not_just_the_first() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 50, "red": 10, "green": 20})
    assert codes(found) == ["UnknownDeployment", "InvalidTrafficSum"]


@given(valid_traffic())
def test_any_split_of_100_over_known_deployments_is_accepted(
    case: tuple[list[str], dict[str, int]],
) -> None:
    deployments, traffic = case
    assert check_traffic(EP, deployments, traffic) == []


@given(deployment_sets, st.data())
def test_any_sum_other_than_0_or_100_is_refused(
    deployments: list[str], data: st.DataObject
) -> None:
    weights = data.draw(
        st.lists(st.integers(0, 100), min_size=len(deployments), max_size=len(deployments))
    )
    assume(sum(weights) not in (0, 100))
    found = check_traffic(EP, deployments, dict(zip(deployments, weights, strict=True)))
    assert codes(found) == ["InvalidTrafficSum"]
    assert f"sums to {sum(weights)};" in found[0].message


@given(valid_traffic())
def test_traffic_checks_ignore_the_case_of_keys(case: tuple[list[str], dict[str, int]]) -> None:
    deployments, traffic = case
    shouted = {k.upper(): v for k, v in traffic.items()}
    assert check_traffic(EP, deployments, shouted) == []


# --- mirror traffic ----------------------------------------------------------------------


def test_mirror_to_a_deployment_without_live_traffic_is_accepted() -> None:
    assert check_traffic(EP, BLUE_GREEN, {"blue": 100}, {"green": 10}) == []
    assert check_traffic(EP, BLUE_GREEN, {"blue": 100, "green": 0}, {"green": 50}) == []


def test_mirror_to_a_live_deployment_is_refused() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 90, "green": 10}, {"green": 10})
    assert codes(found) == ["MirrorToLiveDeployment"]
    assert found[0].deployment == "green"
    assert "'green'" in found[0].message and "'my-endpoint'" in found[0].message
    assert "10% live traffic" in found[0].message


def test_mirror_to_a_live_deployment_is_refused_whatever_the_case() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 90, "GREEN": 10}, {"Green": 10})
    assert codes(found) == ["MirrorToLiveDeployment"]


def test_mirror_above_50_percent_is_refused_naming_the_value() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 100}, {"green": 60})
    assert codes(found) == ["MirrorTooHigh"]
    assert "is 60;" in found[0].message and "at most 50" in found[0].message
    assert "'green'" in found[0].message and "'my-endpoint'" in found[0].message


def test_mirror_to_two_deployments_is_refused() -> None:
    found = check_traffic(EP, ("blue", "green", "red"), {"blue": 100}, {"green": 10, "red": 5})
    assert codes(found) == ["MirrorTooManyTargets"]
    assert "'green', 'red'" in found[0].message and "only one" in found[0].message


def test_zero_mirror_entries_are_ignored_like_the_sdk_drops_them() -> None:
    mirror = {"blue": 0, "green": 10, "gone": 0}
    assert check_traffic(EP, BLUE_GREEN, {"blue": 100}, mirror) == []


def test_mirror_to_an_unknown_deployment_is_refused() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 100}, {"red": 10})
    assert codes(found) == ["UnknownDeployment"]
    assert "mirror traffic" in found[0].message and "'red'" in found[0].message


@pytest.mark.parametrize("value", [10.0, "10", True, -5])
def test_a_mirror_value_that_is_not_a_whole_number_from_0_to_50_is_refused(
    value: object,
) -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 100}, {"green": value})
    assert codes(found) == ["InvalidTrafficValue"]
    assert f"is {value!r};" in found[0].message or f"is {value};" in found[0].message


def test_mirror_on_a_kubernetes_endpoint_is_refused() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 100}, {"green": 10}, kubernetes=True)
    assert codes(found) == ["MirrorOnKubernetes"]
    assert "Kubernetes" in found[0].message and "'my-endpoint'" in found[0].message
    assert found[0].deployment == "green"


def test_a_zero_mirror_on_a_kubernetes_endpoint_is_accepted() -> None:
    assert check_traffic(EP, BLUE_GREEN, {"blue": 100}, {"green": 0}, kubernetes=True) == []


def test_live_and_mirror_violations_are_reported_together() -> None:
    found = check_traffic(EP, BLUE_GREEN, {"blue": 50, "green": 10}, {"green": 70})
    assert sorted(codes(found)) == ["InvalidTrafficSum", "MirrorToLiveDeployment", "MirrorTooHigh"]


@given(valid_traffic(), st.integers(MAX_MIRROR_PERCENT + 1, 10_000))
def test_adding_a_mirror_above_50_is_always_refused(
    case: tuple[list[str], dict[str, int]], percent: int
) -> None:
    deployments, traffic = case
    target = deployments[-1]
    found = check_traffic(EP, deployments, traffic, {target: percent})
    assert "MirrorTooHigh" in codes(found)


@given(valid_traffic(), st.integers(1, MAX_MIRROR_PERCENT))
def test_a_mirror_up_to_50_is_accepted_exactly_when_the_target_has_no_live_traffic(
    case: tuple[list[str], dict[str, int]], percent: int
) -> None:
    deployments, traffic = case
    target = deployments[0]
    found = check_traffic(EP, deployments, traffic, {target: percent})
    assert codes(found) == ([] if traffic[target] == 0 else ["MirrorToLiveDeployment"])


# --- deleting, scaling, creating ---------------------------------------------------------


def test_deleting_a_deployment_without_traffic_is_allowed() -> None:
    assert check_delete_deployment(EP, "blue", {"blue": 0, "green": 100}, {}) == []
    assert check_delete_deployment(EP, "blue", {"green": 100}, {"blue": 0}) == []


def test_deleting_a_live_deployment_is_refused() -> None:
    found = check_delete_deployment(EP, "blue", {"blue": 100}, {})
    assert codes(found) == ["DeleteLiveDeployment"]
    assert "set its traffic to 0 first" in found[0].message
    assert "'blue'" in found[0].message and "'my-endpoint'" in found[0].message
    assert "100%" in found[0].message


def test_deleting_the_mirror_target_is_refused() -> None:
    found = check_delete_deployment(EP, "green", {"blue": 100}, {"green": 10})
    assert codes(found) == ["DeleteMirrorTarget"]
    assert "set its mirror traffic to 0 first" in found[0].message
    assert "10%" in found[0].message


def test_deleting_looks_up_the_deployment_case_insensitively() -> None:
    assert codes(check_delete_deployment(EP, "Blue", {"blue": 100}, {})) == ["DeleteLiveDeployment"]


@pytest.mark.parametrize("count", [1, 3, 50])
def test_instance_counts_from_1_to_50_are_accepted(count: int) -> None:
    assert check_instance_count(EP, "blue", count) == []


@pytest.mark.parametrize("count", [0, -1, 51, 2.0, "3", True, None])
def test_other_instance_counts_are_refused_naming_the_value(count: object) -> None:
    found = check_instance_count(EP, "blue", count)
    assert codes(found) == ["InvalidInstanceCount"]
    assert "'blue'" in found[0].message and "'my-endpoint'" in found[0].message
    shown = str(count) if type(count) is int else repr(count)
    assert f"is {shown};" in found[0].message


def test_a_new_deployment_with_a_valid_name_is_accepted() -> None:
    assert check_new_deployment(EP, ["blue"], "green") == []


def test_a_new_deployment_with_a_bad_name_is_refused() -> None:
    assert codes(check_new_deployment(EP, ["blue"], "green_2")) == ["InvalidName"]


def test_a_21st_deployment_is_refused() -> None:
    existing = [f"dep{i}" for i in range(MAX_DEPLOYMENTS_PER_ENDPOINT)]
    found = check_new_deployment(EP, existing, "one-more")
    assert codes(found) == ["TooManyDeployments"]
    assert "'my-endpoint'" in found[0].message and "'one-more'" in found[0].message
    assert "20" in found[0].message


def test_updating_an_existing_deployment_at_the_limit_is_accepted() -> None:
    existing = [f"dep{i}" for i in range(MAX_DEPLOYMENTS_PER_ENDPOINT)]
    assert check_new_deployment(EP, existing, "DEP3") == []


@pytest.mark.parametrize("timeout", [1, DEFAULT_REQUEST_TIMEOUT_MS, MAX_REQUEST_TIMEOUT_MS])
def test_request_timeouts_up_to_180000_ms_are_accepted(timeout: int) -> None:
    assert check_request_timeout(EP, "blue", timeout) == []


@pytest.mark.parametrize("timeout", [0, -1, MAX_REQUEST_TIMEOUT_MS + 1, 5000.0, False])
def test_other_request_timeouts_are_refused(timeout: object) -> None:
    found = check_request_timeout(EP, "blue", timeout)
    assert codes(found) == ["InvalidRequestTimeout"]
    assert "'blue'" in found[0].message and "'my-endpoint'" in found[0].message


def test_defaults_match_azure() -> None:
    assert DEFAULT_REQUEST_TIMEOUT_MS == 5000
    assert DEFAULT_MAX_CONCURRENT_REQUESTS == 1


# --- raising -----------------------------------------------------------------------------


def test_raise_for_does_nothing_without_violations() -> None:
    raise_for([])


def test_raise_for_raises_every_violation_joined() -> None:
    violations = check_traffic(EP, BLUE_GREEN, {"blue": 50, "red": 10})
    with pytest.raises(RuleViolation) as caught:
        raise_for(violations)
    assert caught.value.violations == tuple(violations)
    assert str(caught.value) == "; ".join(v.message for v in violations)
    assert isinstance(caught.value, RolloutError)


def test_rule_violations_survive_pickling() -> None:
    error = RuleViolation([Violation("InvalidTrafficSum", "sums to 90", None)])
    copy = pickle.loads(pickle.dumps(error))
    assert copy.violations == error.violations and str(copy) == str(error)


# --- normalize_traffic and live_deployments ----------------------------------------------


def test_normalize_traffic_lower_cases_keys_and_drops_zeroes() -> None:
    assert normalize_traffic({"Blue": 0, "GREEN": 100}) == {"green": 100}
    assert normalize_traffic({"blue": 0}) == {}


def test_normalize_traffic_matches_what_azure_ai_ml_sends() -> None:
    # Imported here, not inside @given: the first import of azure.ai.ml takes a second.
    sdk = pytest.importorskip("azure.ai.ml.operations._online_endpoint_operations")

    @given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(-5, 100), max_size=6))
    def agrees(traffic: dict[str, int]) -> None:
        assert normalize_traffic(traffic) == sdk._strip_zeroes_from_traffic(traffic)

    agrees()


@given(st.dictionaries(names, st.integers(0, 100), max_size=6))
def test_normalize_traffic_is_idempotent(traffic: dict[str, int]) -> None:
    once = normalize_traffic(traffic)
    assert normalize_traffic(once) == once


def test_live_deployments_are_those_with_positive_weight() -> None:
    assert live_deployments({"blue": 90, "green": 10, "red": 0}) == ["blue", "green"]
    assert live_deployments({"blue": 0}) == []


# --- TrafficPlan -------------------------------------------------------------------------


def plan(traffic: dict[str, int], mirror: dict[str, int] | None = None) -> TrafficPlan:
    return TrafficPlan(EP, BLUE_GREEN, traffic, mirror or {})


def test_a_plan_reports_its_total_and_validity() -> None:
    assert plan({"blue": 90, "green": 10}).total == 100
    assert plan({"blue": 90, "green": 10}).is_valid()
    assert plan({"blue": 80, "green": 10}).total == 90
    assert not plan({"blue": 80, "green": 10}).is_valid()


def test_a_plan_reports_the_same_violations_as_check_traffic() -> None:
    broken = TrafficPlan(EP, BLUE_GREEN, {"blue": 50}, {"green": 60}, kubernetes=True)
    expected = check_traffic(EP, BLUE_GREEN, {"blue": 50}, {"green": 60}, kubernetes=True)
    assert broken.violations() == expected


def test_a_plan_does_not_change_when_the_callers_maps_do() -> None:
    traffic = {"blue": 100}
    p = TrafficPlan(EP, BLUE_GREEN, traffic, {})
    traffic["blue"] = 0
    assert p.traffic["blue"] == 100
    with pytest.raises(TypeError):
        p.traffic["blue"] = 5  # type: ignore[index]


def test_rest_of_gives_the_remainder_to_the_deployment() -> None:
    after = plan({"blue": 90, "green": 10}).rest_of("blue")
    assert dict(after.traffic) == {"blue": 90, "green": 10}
    after = plan({"blue": 100, "green": 30}).rest_of("blue")
    assert dict(after.traffic) == {"blue": 70, "green": 30}
    assert after.is_valid()


def test_rest_of_adds_a_deployment_missing_from_the_map() -> None:
    after = plan({"blue": 75}).rest_of("green")
    assert dict(after.traffic) == {"blue": 75, "green": 25}


def test_rest_of_clamps_to_0_when_the_others_already_exceed_100() -> None:
    after = TrafficPlan(EP, ("a1a", "b2b", "c3c"), {"a1a": 80, "b2b": 40}, {}).rest_of("c3c")
    assert after.traffic["c3c"] == 0
    assert not after.is_valid()


def test_rest_of_keeps_the_existing_spelling_of_the_key() -> None:
    after = plan({"Blue": 10, "green": 10}).rest_of("blue")
    assert dict(after.traffic) == {"Blue": 90, "green": 10}


@given(valid_traffic(), st.data())
def test_rest_of_any_deployment_of_a_valid_plan_keeps_it_at_100(
    case: tuple[list[str], dict[str, int]], data: st.DataObject
) -> None:
    deployments, traffic = case
    target = data.draw(st.sampled_from(deployments))
    after = TrafficPlan(EP, tuple(deployments), traffic, {}).rest_of(target)
    assert after.total == 100 and after.is_valid()


def test_changes_from_lists_only_deployments_that_differ() -> None:
    before = plan({"blue": 100, "green": 0})
    after = plan({"blue": 100}, {"green": 10})
    assert after.changes_from(before) == [("green", 0, 0, 0, 10)]


def test_changes_from_reports_before_and_after_for_live_and_mirror() -> None:
    before = plan({"blue": 100}, {"green": 10})
    after = plan({"blue": 90, "green": 10})
    assert after.changes_from(before) == [("blue", 100, 90, 0, 0), ("green", 0, 10, 10, 0)]


def test_changes_from_ignores_the_case_of_keys() -> None:
    assert plan({"BLUE": 100}).changes_from(plan({"blue": 100})) == []


@given(valid_traffic())
def test_a_plan_has_no_changes_from_itself(case: tuple[list[str], dict[str, int]]) -> None:
    deployments, traffic = case
    p = TrafficPlan(EP, tuple(deployments), traffic, {})
    assert p.changes_from(p) == []
