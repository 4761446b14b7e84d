"""Staged promotion plans: steps, gates, verdicts and the plan's state machine, pure.

A plan moves one endpoint's traffic from a baseline deployment to a candidate in steps
(default: mirror 10% → live 10% → 50% → 100% → retire the baseline). Each step has a
minimum time and gates; Promote moves on only when every gate passes, unless a reason
to override is given; Abort puts the baseline back to 100% live and mirror to 0. Each
function returns a new `Plan` (plans are frozen) and raises `Conflict` for a transition
the plan's state does not allow, `RuleViolation` for gates that do not pass or steps
that make no sense. Nothing here talks to a workspace: `wanted_traffic` says what the
plan wants and the page applies it with `changes.begin_set_traffic`; plan_store.py keeps
plans in the dashboard's SQLite store.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from rollout import rules
from rollout.errors import Conflict, RuleViolation, Violation
from rollout.evidence import Evidence
from rollout.gates import Gates, Verdict, evaluate_gates, overall

StepKind = Literal["mirror", "live", "retire"]
PlanState = Literal["ready", "running", "aborted", "retired", "done"]
Action = Literal["start", "promote", "abort", "retire"]

OPEN_STATES: tuple[PlanState, ...] = ("ready", "running")


@dataclass(frozen=True)
class Step:
    kind: StepKind
    percent: int = 0  # the candidate's mirror or live share; 0 for retire
    min_minutes: float = 10.0
    gates: Gates = field(default_factory=Gates)

    @property
    def label(self) -> str:
        return "retire the baseline" if self.kind == "retire" else f"{self.kind} {self.percent}%"


DEFAULT_STEPS: tuple[Step, ...] = (
    Step("mirror", 10, 10.0),
    Step("live", 10, 10.0),
    Step("live", 50, 15.0),
    Step("live", 100, 15.0),
    Step("retire", 0, 0.0),
)


@dataclass(frozen=True)
class Transition:
    at: float
    action: Action
    from_step: int
    to_step: int
    reason: str = ""  # why: the override of failing gates, or the abort
    who: str = ""
    verdicts: tuple[Verdict, ...] = ()  # the gates as they stood when the step was left
    evidence: tuple[Evidence, ...] = ()  # (baseline, candidate) the gates were evaluated on


@dataclass(frozen=True)
class Plan:
    """A staged promotion of `candidate` over `baseline` on one endpoint.

    `current` is the index of the step in progress (-1 before the start); `entered_at`
    when it began (seconds since the epoch). `id` and `version` belong to the store.
    """

    endpoint: str
    baseline: str
    candidate: str
    steps: tuple[Step, ...] = DEFAULT_STEPS
    workspace: str = ""
    state: PlanState = "ready"
    current: int = -1
    entered_at: float | None = None
    transitions: tuple[Transition, ...] = ()
    id: int | None = None
    version: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "transitions", tuple(self.transitions))
        rules.raise_for(check_plan(self.endpoint, self.baseline, self.candidate, self.steps))

    @property
    def step(self) -> Step | None:
        """The step in progress; None before the start."""
        return self.steps[self.current] if 0 <= self.current < len(self.steps) else None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def where(self) -> str:
        """'step 2 of 5 (live 10%)', for messages."""
        if self.step is None:
            return f"not started ({self.state})"
        return f"step {self.current + 1} of {len(self.steps)} ({self.step.label})"


def step_status(plan: Plan, index: int) -> str:
    """done, current, next, aborted, or skipped (after an abort)."""
    if plan.state in ("done", "retired"):
        return "done"
    if plan.state == "aborted":
        return (
            "aborted" if index == plan.current else ("done" if index < plan.current else "skipped")
        )
    if index < plan.current:
        return "done"
    return "current" if index == plan.current else "next"


# --- checking a plan ------------------------------------------------------------------------


def check_plan(
    endpoint: str, baseline: str, candidate: str, steps: Sequence[Step]
) -> list[Violation]:
    """Every problem with a plan's names and steps; empty when it can run."""
    found = rules.check_name("endpoint", endpoint)
    found += rules.check_name("deployment", baseline) + rules.check_name("deployment", candidate)
    if baseline.lower() == candidate.lower():
        found.append(
            Violation(
                "InvalidPlan",
                f"the plan for {endpoint!r} has {candidate!r} as both baseline and candidate; "
                "pick the deployment to promote and the one it replaces",
                candidate,
            )
        )
    if not steps:
        found.append(Violation("InvalidPlanStep", f"the plan for {endpoint!r} has no steps"))
    had_all_traffic = False
    for n, step in enumerate(steps, start=1):
        found += _check_step(endpoint, n, step, last=n == len(steps), after_100=had_all_traffic)
        had_all_traffic = had_all_traffic or (step.kind == "live" and step.percent == 100)
    return found


def _check_step(
    endpoint: str, n: int, step: Step, *, last: bool, after_100: bool
) -> list[Violation]:
    found: list[str] = []
    limits = {"mirror": rules.MAX_MIRROR_PERCENT, "live": rules.MAX_TRAFFIC_PERCENT}
    if step.kind not in ("mirror", "live", "retire"):
        found.append(f"is of kind {step.kind!r}; it must be mirror, live or retire")
    elif step.kind == "retire":
        if not last:
            found.append("retires the baseline but is not the last step; make it the last")
        if not after_100:
            found.append("retires the baseline before the candidate has had 100% live traffic")
    elif not (isinstance(step.percent, int) and 1 <= step.percent <= limits[step.kind]):
        found.append(
            f"has {step.percent!r}%; it must be a whole number from 1 to {limits[step.kind]}"
        )
    if not step.min_minutes >= 0:
        found.append(f"has a minimum time of {step.min_minutes} min; it must be 0 or more")
    gates = step.gates
    if not 0 <= gates.max_error_increase <= 1:
        found.append(
            f"allows an error-rate increase of {gates.max_error_increase}; give it as a fraction "
            "from 0 to 1 (0.01 is 1 percentage point)"
        )
    if not gates.max_p95_ratio > 0:
        found.append(f"allows a P95 ratio of {gates.max_p95_ratio}; it must be above 0")
    if not (isinstance(gates.min_requests, int) and gates.min_requests >= 1):
        found.append(f"needs {gates.min_requests!r} requests; it must be a whole number, 1 or more")
    return [
        Violation("InvalidPlanStep", f"step {n} ({step.label}) of the plan for {endpoint!r} {text}")
        for text in found
    ]


# --- traffic --------------------------------------------------------------------------------


def _traffic(
    plan: Plan,
    deployments: Collection[str],
    live: dict[str, int],
    mirror: dict[str, int],
    *,
    kubernetes: bool,
) -> rules.TrafficPlan:
    everyone = {d: 0 for d in deployments}
    traffic = rules.TrafficPlan(
        plan.endpoint, tuple(deployments), {**everyone, **live}, mirror, kubernetes=kubernetes
    )
    rules.raise_for(traffic.violations())
    return traffic


def step_traffic(
    plan: Plan, index: int, deployments: Collection[str], *, kubernetes: bool = False
) -> rules.TrafficPlan:
    """The live and mirror traffic step `index` wants, every other deployment at 0; checked
    with Azure's rules (RuleViolation, e.g. for a mirror step on a Kubernetes endpoint)."""
    step = plan.steps[index]
    b, c = plan.baseline, plan.candidate
    if step.kind == "mirror":
        return _traffic(plan, deployments, {b: 100}, {c: step.percent}, kubernetes=kubernetes)
    if step.kind == "live":
        live = {b: 100 - step.percent, c: step.percent}
        return _traffic(plan, deployments, live, {}, kubernetes=kubernetes)
    return _traffic(plan, deployments, {c: 100}, {}, kubernetes=kubernetes)


def abort_traffic(
    plan: Plan, deployments: Collection[str], *, kubernetes: bool = False
) -> rules.TrafficPlan:
    """The baseline at 100% live, nothing mirrored."""
    return _traffic(plan, deployments, {plan.baseline: 100}, {}, kubernetes=kubernetes)


def wanted_traffic(
    plan: Plan, deployments: Collection[str], *, kubernetes: bool = False
) -> rules.TrafficPlan | None:
    """What the plan's state wants the endpoint's traffic to be; None before the start."""
    if plan.state == "aborted":
        return abort_traffic(plan, deployments, kubernetes=kubernetes)
    if plan.state == "ready" or plan.step is None:
        return None
    if plan.state == "retired":
        kept = [d for d in deployments if d.lower() != plan.baseline.lower()]
        return _traffic(plan, kept, {plan.candidate: 100}, {}, kubernetes=kubernetes)
    return step_traffic(plan, plan.current, deployments, kubernetes=kubernetes)


# --- gates (gates.py) ----------------------------------------------------------------------


def evaluate(
    step: Step, baseline: Evidence, candidate: Evidence, *, minutes_in_step: float
) -> tuple[Verdict, ...]:
    """Each gate of `step` (gates.py) on the evidence gathered in it; a retire step has none."""
    if step.kind == "retire":
        return ()
    return evaluate_gates(
        step.gates,
        baseline,
        candidate,
        min_minutes=step.min_minutes,
        minutes_in_step=minutes_in_step,
    )


# --- the state machine ----------------------------------------------------------------------


def minutes_in_step(plan: Plan, *, now: float) -> float:
    return max(0.0, now - plan.entered_at) / 60.0 if plan.entered_at is not None else 0.0


def baseline_reference(plan: Plan) -> Evidence | None:
    """The baseline's evidence from the last step left with the baseline serving requests:
    what a step that gives the baseline no live traffic (live 100%) compares against."""
    for move in reversed(plan.transitions):
        if move.evidence and move.evidence[0].requests > 0:
            return move.evidence[0]
    return None


def evaluate_current(
    plan: Plan, baseline: Evidence, candidate: Evidence, *, now: float
) -> tuple[Verdict, ...]:
    """The gates of the step in progress; () before the start. In a step where the baseline
    serves nothing, the baseline is its evidence from the step before (`baseline_reference`)."""
    if plan.step is None:
        return ()
    baseline = _baseline_for(plan, baseline)
    return evaluate(plan.step, baseline, candidate, minutes_in_step=minutes_in_step(plan, now=now))


def _baseline_for(plan: Plan, baseline: Evidence) -> Evidence:
    step = plan.step
    if step is not None and step.kind == "live" and step.percent == 100 and not baseline.requests:
        return baseline_reference(plan) or baseline
    return baseline


def _refuse(plan: Plan, doing: str, why: str) -> Conflict:
    return Conflict(f"cannot {doing} the plan for {plan.endpoint!r}: it is {plan.where()}; {why}")


def _moved(
    plan: Plan,
    action: Action,
    to: int,
    now: float,
    *,
    reason: str = "",
    who: str = "",
    verdicts: tuple[Verdict, ...] = (),
    evidence: tuple[Evidence, ...] = (),
) -> Plan:
    move = Transition(now, action, plan.current, to, reason, who, verdicts, evidence)
    return replace(plan, current=to, entered_at=now, transitions=(*plan.transitions, move))


def start(plan: Plan, *, now: float, who: str = "") -> Plan:
    """Begin the first step."""
    if plan.state != "ready":
        raise _refuse(plan, "start", f"it has already started (state {plan.state})")
    return replace(_moved(plan, "start", 0, now, who=who), state="running")


def promote(
    plan: Plan,
    *,
    baseline: Evidence,
    candidate: Evidence,
    now: float,
    reason: str = "",
    who: str = "",
) -> Plan:
    """Leave the step in progress for the next, or finish the plan after its last step.

    The gates are evaluated here, on the evidence given, so that a stale verdict cannot
    promote; when they do not all pass, only a `reason` to override lets the plan move on.
    """
    if plan.state != "running" or plan.step is None:
        raise _refuse(plan, "promote", "only a running plan can be promoted")
    if plan.step.kind == "retire":
        raise _refuse(plan, "promote", f"retire {plan.baseline!r} to finish it")
    verdicts = evaluate_current(plan, baseline, candidate, now=now)
    if overall(verdicts) != "pass" and not reason.strip():
        raise RuleViolation(
            Violation(
                "GateNotPassed",
                f"gate {v.gate!r} of {plan.where()} of the plan for {plan.endpoint!r} is "
                f"{v.status}: {v.words}; wait, or give a reason to override",
                plan.candidate,
            )
            for v in verdicts
            if v.status != "pass"
        )
    last = plan.current == len(plan.steps) - 1
    moved = _moved(
        plan, "promote", plan.current if last else plan.current + 1, now,
        reason=reason.strip(), who=who, verdicts=verdicts,
        evidence=(_baseline_for(plan, baseline), candidate),
    )  # fmt: skip
    return replace(moved, state="done") if last else moved


def abort(plan: Plan, *, now: float, reason: str = "", who: str = "") -> Plan:
    """Stop: the baseline takes 100% live traffic back (see `abort_traffic`)."""
    if plan.state == "retired":
        raise _refuse(
            plan, "abort", f"baseline {plan.baseline!r} is retired; nothing to go back to"
        )
    if not plan.is_open:
        raise _refuse(plan, "abort", f"it is already {plan.state}")
    moved = _moved(plan, "abort", plan.current, now, reason=reason.strip(), who=who)
    return replace(moved, state="aborted")


def check_retire(plan: Plan, traffic: dict[str, int], mirror: dict[str, int]) -> list[Violation]:
    """Azure's refusals of deleting the baseline with the endpoint's traffic as it is."""
    return rules.check_delete_deployment(plan.endpoint, plan.baseline, traffic, mirror)


def retire(plan: Plan, *, now: float, who: str = "") -> Plan:
    """Finish at the retire step: the page deletes the baseline."""
    if plan.state != "running" or plan.step is None or plan.step.kind != "retire":
        raise _refuse(
            plan, "retire",
            f"retire {plan.baseline!r} only after {plan.candidate!r} has had 100% live "
            "traffic and the plan reached its retire step",
        )  # fmt: skip
    return replace(_moved(plan, "retire", plan.current, now, who=who), state="retired")
