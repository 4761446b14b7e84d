"""Staged promotion plans: steps, traffic, gates and the state machine (rollout/promotion.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollout.errors import Conflict, RuleViolation
from rollout.evidence import Evidence
from rollout.gates import Gates, Verdict, overall
from rollout.promotion import (
    DEFAULT_STEPS,
    Plan,
    Step,
    abort,
    abort_traffic,
    baseline_reference,
    check_plan,
    check_retire,
    evaluate,
    evaluate_current,
    minutes_in_step,
    promote,
    retire,
    start,
    step_traffic,
    wanted_traffic,
)

EP = "my-endpoint"
DEPLOYMENTS = ("blue", "green", "old")
T0 = 1_800_000_000.0
MIN = 60.0


def plan(**kwargs: object) -> Plan:
    return Plan(EP, "blue", "green", workspace="sub/rg/ws", **kwargs)  # type: ignore[arg-type]


def served(
    name: str, requests: int, errors: int = 0, p95: float | None = 100.0, p50: float = 40.0
) -> Evidence:
    return Evidence(
        name, minutes=15, live=requests, classified=requests, errors_5xx=errors,
        p50_ms=p50, p95_ms=p95,
    )  # fmt: skip


GOOD_BLUE = served("blue", 10_000, 30)
GOOD_GREEN = served("green", 1_000, 3)


def running_at(index: int) -> Plan:
    """A plan at step `index`, entered at T0."""
    p = start(plan(), now=T0 - 1)
    return replace(p, current=index, entered_at=T0)


# --- steps ----------------------------------------------------------------------------------


def test_the_default_steps_mirror_then_go_live_in_three_steps_then_retire() -> None:
    assert [s.label for s in DEFAULT_STEPS] == [
        "mirror 10%",
        "live 10%",
        "live 50%",
        "live 100%",
        "retire the baseline",
    ]
    assert all(s.min_minutes >= 0 for s in DEFAULT_STEPS)


def test_steps_and_gates_are_editable() -> None:
    steps = (Step("live", 25, 5.0, Gates(0.02, 2.0, 50)), Step("live", 100, 1.0))
    p = plan(steps=steps)
    assert p.steps[0].gates.min_requests == 50
    assert p.steps[0].percent == 25


def test_a_plan_with_baseline_and_candidate_alike_is_refused() -> None:
    with pytest.raises(RuleViolation, match="'Blue' as both baseline and candidate"):
        Plan(EP, "blue", "Blue")


def test_retiring_before_the_candidate_had_all_traffic_is_refused() -> None:
    found = check_plan(EP, "blue", "green", (Step("live", 50), Step("retire")))
    assert [v.code for v in found] == ["InvalidPlanStep"]
    assert "step 2 (retire the baseline)" in found[0].message
    assert "before the candidate has had 100% live traffic" in found[0].message


@pytest.mark.parametrize(
    ("step", "words"),
    [
        (Step("mirror", 60), "has 60%; it must be a whole number from 1 to 50"),
        (Step("live", 0), "has 0%; it must be a whole number from 1 to 100"),
        (Step("live", 10, -1.0), "minimum time of -1.0 min"),
        (Step("live", 10, gates=Gates(max_error_increase=2)), "error-rate increase of 2"),
        (Step("live", 10, gates=Gates(max_p95_ratio=0)), "P95 ratio of 0"),
        (Step("live", 10, gates=Gates(min_requests=0)), "needs 0 requests"),
    ],
)
def test_a_step_that_makes_no_sense_is_refused_with_its_value(step: Step, words: str) -> None:
    with pytest.raises(RuleViolation, match=words):
        plan(steps=(step, Step("live", 100)))


def test_retire_must_be_the_last_step() -> None:
    steps = (Step("live", 100), Step("retire"), Step("live", 100))
    with pytest.raises(RuleViolation, match="is not the last step"):
        plan(steps=steps)


# --- traffic --------------------------------------------------------------------------------


def test_each_default_step_wants_traffic_azure_accepts() -> None:
    p = plan()
    wanted = [step_traffic(p, i, DEPLOYMENTS) for i in range(len(p.steps))]
    assert [(dict(t.traffic), dict(t.mirror)) for t in wanted] == [
        ({"blue": 100, "green": 0, "old": 0}, {"green": 10}),
        ({"blue": 90, "green": 10, "old": 0}, {}),
        ({"blue": 50, "green": 50, "old": 0}, {}),
        ({"blue": 0, "green": 100, "old": 0}, {}),
        ({"blue": 0, "green": 100, "old": 0}, {}),
    ]
    assert all(t.is_valid() for t in wanted)


def test_a_mirror_step_on_a_kubernetes_endpoint_is_refused_by_azures_rules() -> None:
    with pytest.raises(RuleViolation, match="Kubernetes online endpoint"):
        step_traffic(plan(), 0, DEPLOYMENTS, kubernetes=True)


def test_a_step_naming_a_deployment_the_endpoint_lacks_is_refused() -> None:
    with pytest.raises(RuleViolation, match="names deployment 'green', which the endpoint"):
        step_traffic(plan(), 1, ("blue",))


def test_abort_wants_the_baseline_at_100_and_no_mirror() -> None:
    t = abort_traffic(plan(), DEPLOYMENTS)
    assert (dict(t.traffic), dict(t.mirror)) == ({"blue": 100, "green": 0, "old": 0}, {})


def test_what_the_plan_wants_follows_its_state() -> None:
    p = plan()
    assert wanted_traffic(p, DEPLOYMENTS) is None
    p = start(p, now=T0)
    assert dict(wanted_traffic(p, DEPLOYMENTS).mirror) == {"green": 10}  # type: ignore[union-attr]
    aborted = abort(p, now=T0 + MIN)
    assert dict(wanted_traffic(aborted, DEPLOYMENTS).traffic)["blue"] == 100  # type: ignore[union-attr]
    retired = retire(running_at(4), now=T0)
    after = wanted_traffic(retired, DEPLOYMENTS)
    assert after is not None and "blue" not in after.deployments


# --- gates ----------------------------------------------------------------------------------


def by_gate(verdicts: tuple[Verdict, ...]) -> dict[str, Verdict]:
    return {v.gate: v for v in verdicts}


def test_good_evidence_after_the_minimum_time_passes_every_gate() -> None:
    verdicts = evaluate(DEFAULT_STEPS[1], GOOD_BLUE, GOOD_GREEN, minutes_in_step=12)
    assert [v.status for v in verdicts] == ["pass"] * 4
    assert overall(verdicts) == "pass"


def test_a_candidate_failing_a_fifth_of_requests_fails_the_error_gate_with_its_numbers() -> None:
    verdicts = evaluate(
        DEFAULT_STEPS[1], GOOD_BLUE, served("green", 1_000, 200), minutes_in_step=12
    )
    gate = by_gate(verdicts)["error-rate increase"]
    assert gate.status == "fail"
    assert gate.value == pytest.approx(0.2 - 0.003)
    assert gate.threshold == 0.01
    assert gate.words.startswith("+19.7 pp > +1.0 pp: green's error rate is higher: 20.0% vs 0.3%")
    assert overall(verdicts) == "fail"


def test_a_slow_candidate_fails_the_p95_gate() -> None:
    slow = served("green", 1_000, 3, p95=250.0)
    gate = by_gate(evaluate(DEFAULT_STEPS[1], GOOD_BLUE, slow, minutes_in_step=12))["P95 ratio"]
    assert (gate.status, gate.value, gate.threshold) == ("fail", 2.5, 1.5)
    assert gate.words.startswith("2.50× > 1.50×")


def test_too_little_time_is_not_enough_evidence() -> None:
    verdicts = evaluate(DEFAULT_STEPS[1], GOOD_BLUE, GOOD_GREEN, minutes_in_step=4)
    assert by_gate(verdicts)["minimum time"].status == "not enough evidence"
    assert overall(verdicts) == "not enough evidence"


def test_a_baseline_without_traffic_gives_no_comparison() -> None:
    verdicts = evaluate(DEFAULT_STEPS[3], served("blue", 0), GOOD_GREEN, minutes_in_step=20)
    gates = by_gate(verdicts)
    assert gates["error-rate increase"].status == "not enough evidence"
    assert "blue has 0" in gates["error-rate increase"].words


def test_the_retire_step_has_no_gates() -> None:
    assert evaluate(DEFAULT_STEPS[4], GOOD_BLUE, GOOD_GREEN, minutes_in_step=0) == ()


@st.composite
def evidence_of(draw: st.DrawFn) -> Evidence:
    live, mirrored = draw(st.integers(0, 3_000)), draw(st.integers(0, 3_000))
    classified = max(0, live + mirrored + draw(st.integers(-50, 50)))
    e4 = draw(st.integers(0, classified))
    e5 = draw(st.integers(0, classified - e4))
    p95 = draw(st.one_of(st.none(), st.floats(0.1, 10_000)))
    return Evidence(
        "x", minutes=10, live=live, mirrored=mirrored, classified=classified,
        errors_4xx=e4, errors_5xx=e5, p50_ms=p95 / 2 if p95 else None, p95_ms=p95,
    )  # fmt: skip


gates_of = st.builds(
    Gates,
    st.floats(0, 1),
    st.floats(0.01, 100),
    st.integers(1, 5_000),
)


@given(
    evidence_of(), evidence_of(), gates_of, st.floats(0, 1_000), st.sampled_from(["mirror", "live"])
)
def test_a_verdict_never_passes_below_the_minimum_sample(
    baseline: Evidence, candidate: Evidence, gates: Gates, minutes: float, kind: str
) -> None:
    step = Step(kind, 10, 5.0, gates)  # type: ignore[arg-type]
    verdicts = evaluate(
        step, replace(baseline, deployment="blue"), replace(candidate, deployment="green"),
        minutes_in_step=minutes,
    )  # fmt: skip
    if candidate.requests < gates.min_requests:
        assert overall(verdicts) != "pass"
        assert all(v.status != "pass" for v in verdicts if v.gate != "minimum time")
    if min(baseline.requests, baseline.classified) < gates.min_requests:
        compared = [v for v in verdicts if v.gate in ("error-rate increase", "P95 ratio")]
        assert all(v.status == "not enough evidence" for v in compared)
    assert all(v.status in ("pass", "fail", "not enough evidence") for v in verdicts)


# --- the state machine ----------------------------------------------------------------------


def test_a_new_plan_is_ready_and_starts_at_the_first_step() -> None:
    p = plan()
    assert (p.state, p.current, p.step) == ("ready", -1, None)
    p = start(p, now=T0, who="ana")
    assert (p.state, p.current, p.entered_at) == ("running", 0, T0)
    assert p.transitions[-1].action == "start" and p.transitions[-1].who == "ana"


def test_time_in_step_counts_from_entering_it() -> None:
    p = start(plan(), now=T0)
    assert minutes_in_step(p, now=T0 + 7 * MIN) == pytest.approx(7)
    assert minutes_in_step(plan(), now=T0) == 0


def test_promote_moves_to_the_next_step_when_the_gates_pass() -> None:
    p = promote(running_at(1), baseline=GOOD_BLUE, candidate=GOOD_GREEN, now=T0 + 11 * MIN)
    assert (p.current, p.entered_at, p.state) == (2, T0 + 11 * MIN, "running")
    move = p.transitions[-1]
    assert (move.action, move.from_step, move.to_step, move.reason) == ("promote", 1, 2, "")
    assert overall(move.verdicts) == "pass"


def test_promote_is_refused_when_a_gate_fails_and_names_the_gate_and_its_value() -> None:
    bad = served("green", 1_000, 200)
    with pytest.raises(RuleViolation) as refused:
        promote(running_at(1), baseline=GOOD_BLUE, candidate=bad, now=T0 + 11 * MIN)
    message = str(refused.value)
    assert "gate 'error-rate increase' of step 2 of 5 (live 10%)" in message
    assert "+19.7 pp > +1.0 pp" in message
    assert "give a reason to override" in message
    assert [v.code for v in refused.value.violations] == ["GateNotPassed"]


def test_promote_is_refused_before_the_minimum_time() -> None:
    with pytest.raises(RuleViolation, match=r"'minimum time'.*not enough evidence: 3.0 of 10 min"):
        promote(running_at(1), baseline=GOOD_BLUE, candidate=GOOD_GREEN, now=T0 + 3 * MIN)


def test_an_override_needs_a_reason_and_keeps_it() -> None:
    bad = served("green", 1_000, 200)
    with pytest.raises(RuleViolation):
        promote(running_at(1), baseline=GOOD_BLUE, candidate=bad, now=T0, reason="   ")
    p = promote(running_at(1), baseline=GOOD_BLUE, candidate=bad, now=T0, reason="known 4xx")
    assert p.current == 2
    assert p.transitions[-1].reason == "known 4xx"
    assert overall(p.transitions[-1].verdicts) == "fail"


def test_promote_from_the_last_step_finishes_the_plan() -> None:
    p = plan(steps=(Step("live", 100, 0.0, Gates(min_requests=10)),))
    p = promote(start(p, now=T0), baseline=GOOD_BLUE, candidate=GOOD_GREEN, now=T0)
    assert (p.state, p.current) == ("done", 0)


def test_the_retire_step_is_left_by_retire_not_promote() -> None:
    with pytest.raises(Conflict, match="retire 'blue' to finish it"):
        promote(running_at(4), baseline=GOOD_BLUE, candidate=GOOD_GREEN, now=T0, reason="x")
    p = retire(running_at(4), now=T0 + MIN, who="ana")
    assert p.state == "retired"
    assert p.transitions[-1].action == "retire"


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_retire_before_the_retire_step_is_refused(index: int) -> None:
    with pytest.raises(Conflict, match="retire 'blue' only after 'green' has had 100% live"):
        retire(running_at(index), now=T0)


def test_promote_before_the_start_is_refused() -> None:
    with pytest.raises(Conflict, match="it is not started \\(ready\\); only a running plan"):
        promote(plan(), baseline=GOOD_BLUE, candidate=GOOD_GREEN, now=T0)


def test_starting_twice_is_refused() -> None:
    with pytest.raises(Conflict, match="already started \\(state running\\)"):
        start(start(plan(), now=T0), now=T0)


def test_abort_from_any_open_step_keeps_the_reason() -> None:
    for index in range(len(DEFAULT_STEPS)):
        p = abort(running_at(index), now=T0 + MIN, reason="429s on green")
        assert p.state == "aborted"
        assert p.transitions[-1].reason == "429s on green"
    assert abort(plan(), now=T0).state == "aborted"


def test_abort_after_retiring_is_refused() -> None:
    retired = retire(running_at(4), now=T0)
    with pytest.raises(Conflict, match="baseline 'blue' is retired; nothing to go back to"):
        abort(retired, now=T0)


def test_nothing_moves_an_aborted_plan() -> None:
    aborted = abort(running_at(1), now=T0)
    with pytest.raises(Conflict, match="already aborted"):
        abort(aborted, now=T0)
    with pytest.raises(Conflict):
        promote(aborted, baseline=GOOD_BLUE, candidate=GOOD_GREEN, now=T0, reason="x")
    with pytest.raises(Conflict):
        retire(aborted, now=T0)


def test_evaluate_current_uses_the_time_in_the_step() -> None:
    verdicts = evaluate_current(running_at(1), GOOD_BLUE, GOOD_GREEN, now=T0 + 2 * MIN)
    assert by_gate(verdicts)["minimum time"].value == pytest.approx(2)
    assert evaluate_current(plan(), GOOD_BLUE, GOOD_GREEN, now=T0) == ()


def test_retiring_a_baseline_that_still_has_traffic_is_refused_by_azures_rules() -> None:
    found = check_retire(running_at(4), {"blue": 10, "green": 90}, {})
    assert [v.code for v in found] == ["DeleteLiveDeployment"]
    assert check_retire(running_at(4), {"green": 100}, {}) == []


@given(st.lists(st.sampled_from(["start", "promote", "override", "abort", "retire"]), max_size=12))
def test_any_sequence_of_actions_keeps_the_plan_consistent(actions: list[str]) -> None:
    p = plan(steps=tuple(replace(s, min_minutes=0.0) for s in DEFAULT_STEPS))
    had_100 = False
    for n, action in enumerate(actions):
        now = T0 + n * MIN
        try:
            if action == "start":
                p = start(p, now=now)
            elif action in ("promote", "override"):
                reason = "demo" if action == "override" else ""
                p = promote(p, baseline=GOOD_BLUE, candidate=GOOD_GREEN, now=now, reason=reason)
            elif action == "abort":
                p = abort(p, now=now)
            else:
                p = retire(p, now=now)
        except (Conflict, RuleViolation):
            continue
        step = p.step
        had_100 = had_100 or (step is not None and step.kind == "live" and step.percent == 100)
        if p.state == "retired":
            assert had_100
        if p.state == "ready":
            assert p.current == -1
        if p.state == "running":
            assert p.step is not None


def test_at_live_100_the_baseline_is_compared_with_its_evidence_from_the_step_before() -> None:
    at_50 = running_at(2)
    at_100 = promote(at_50, baseline=GOOD_BLUE, candidate=GOOD_GREEN, now=T0 + 20 * MIN)
    assert at_100.step == DEFAULT_STEPS[3]
    assert baseline_reference(at_100) == GOOD_BLUE
    idle_blue = served("blue", 0, p95=None)
    verdicts = evaluate_current(at_100, idle_blue, GOOD_GREEN, now=T0 + 40 * MIN)
    assert overall(verdicts) == "pass"
    bad = served("green", 1_000, 200)
    failing = evaluate_current(at_100, idle_blue, bad, now=T0 + 40 * MIN)
    assert by_gate(failing)["error-rate increase"].status == "fail"
    at_retire = promote(at_100, baseline=idle_blue, candidate=GOOD_GREEN, now=T0 + 40 * MIN)
    assert at_retire.step == DEFAULT_STEPS[4]
    assert at_retire.transitions[-1].evidence == (GOOD_BLUE, GOOD_GREEN)


def test_a_plan_with_no_baseline_evidence_yet_has_no_reference() -> None:
    assert baseline_reference(running_at(3)) is None
