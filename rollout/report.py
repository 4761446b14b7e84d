"""A rollout as the review report has it: one endpoint over a time range (or one plan, from
its creation to its end), gathered from the dashboard's own store, plain values only.

What the endpoint looked like before and after, every change in between (the dashboard's
own and those noticed as made elsewhere), a plan's steps with each gate's verdict and the
numbers behind it, per-deployment totals from the metrics, and the prediction comparisons
run in the range. Nothing here reads the workspace: the caller passes the endpoint as it
is now (None when it is gone) and the metrics it read for the range; report_html.py turns
a `Report` into one self-contained HTML file.

The state before is told by walking back from the state now over every change since the
start (a dashboard change's own `before`, an outside change's earlier state); when the
endpoint is gone and its deletion is not in the log, the last state the dashboard saw
before the start (drift.py) stands in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rollout import drift, history, plan_store
from rollout.compare import count_text, percent_text
from rollout.endpoints import EndpointView
from rollout.evidence import Evidence, evidence_from_metrics
from rollout.gates import verdict_texts
from rollout.history import Change
from rollout.history_words import entry_words, took_text
from rollout.metrics import EndpointMetrics, Window, default_granularity, granularity_choices
from rollout.plan_store import ComparisonRecord
from rollout.promotion import Plan, step_status


@dataclass(frozen=True)
class Snapshot:
    """What a change can alter on one endpoint; models and states only when read now."""

    traffic: dict[str, int]
    mirror: dict[str, int]
    deployments: dict[str, int | None]  # name -> instances (None: not known)
    models: dict[str, str] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_view(cls, view: EndpointView) -> Snapshot:
        deployments = sorted(view.deployments, key=lambda d: d.name)
        return cls(
            {k: int(v) for k, v in sorted(view.traffic.items()) if v},
            {k: int(v) for k, v in sorted(view.mirror.items()) if v},
            {d.name: d.instance_count for d in deployments},
            {d.name: d.model for d in deployments},
            {d.name: d.state for d in deployments},
        )

    @classmethod
    def of_state(cls, state: drift.State) -> Snapshot:
        return cls(dict(state.traffic), dict(state.mirror), dict(state.deployments))

    def rows(self) -> list[dict[str, str]]:
        names = sorted(set(self.deployments) | set(self.traffic) | set(self.mirror))
        return [
            {
                "deployment": n,
                "model": self.models.get(n, "–"),
                "state": self.states.get(n, "–"),
                "instances": "?" if self.deployments.get(n) is None else str(self.deployments[n]),
                "live": f"{self.traffic.get(n, 0)}%",
                "mirror": f"{self.mirror.get(n, 0)}%",
            }
            for n in names
        ]


@dataclass(frozen=True)
class Side:
    """The endpoint at one end of the range: `snapshot` None when it did not exist then
    (`known` False: nothing tells what it was)."""

    at: float
    snapshot: Snapshot | None
    how: str  # "read now", "from the audit log", "last seen by the dashboard"
    known: bool = True


@dataclass(frozen=True)
class Row:
    """One line of the timeline."""

    at: float
    who: str
    what: str
    before: str
    after: str
    reason: str
    outcome: str
    took: str
    outside: bool = False


@dataclass(frozen=True)
class PlanSection:
    plan: Plan
    steps: list[dict[str, str]]
    moves: list[dict[str, Any]]  # each: at, action, from, to, who, reason, verdicts, evidence


@dataclass(frozen=True)
class Report:
    workspace: str  # the workspace's label
    endpoint: str
    scoring_uri: str
    start: float
    end: float
    generated_at: float
    generated_by: str
    before: Side
    after: Side
    timeline: list[Row]
    changes: list[Change]  # the dashboard's own in the range (the charts mark them)
    totals: list[dict[str, str]]
    comparisons: list[ComparisonRecord]
    plan: PlanSection | None = None
    problems: list[str] = field(default_factory=list)
    mirror_dimension: bool = True

    @property
    def title(self) -> str:
        if self.plan is not None:
            p = self.plan.plan
            return f"Plan {p.id}: {p.candidate} over {p.baseline} on {self.endpoint}"
        return f"Rollout review: {self.endpoint}"


# --- the range ----------------------------------------------------------------------------


def plan_range(
    plan: Plan, *, now: float | None = None, path: Path | None = None
) -> tuple[float, float]:
    """From the plan's creation to its last save when it is closed, else to now."""
    now = time.time() if now is None else now
    assert plan.id is not None, "a plan is reported once it is stored"
    created, saved = plan_store.plan_times(plan.id, path=path)
    return created, (now if plan.is_open else max(saved, created))


def report_window(start: float, end: float, *, sub_minute: bool) -> Window:
    """The metrics window of a range: whole buckets from the one the start falls in."""
    begin, finish = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    span = max(finish - begin, timedelta(seconds=1))
    choices = granularity_choices(span, sub_minute=sub_minute)
    if choices:
        grain = default_granularity(span, choices)
    else:  # shorter than three of the finest buckets
        grain = timedelta(seconds=10) if sub_minute else timedelta(minutes=1)
    step = grain.total_seconds()
    begin = datetime.fromtimestamp(math.floor(start / step) * step, UTC)
    return Window(begin, max(finish, begin + grain), grain)


def report_filename(endpoint: str, at: float) -> str:
    """bluegreen-report-my-endpoint-20261202-0351.html (UTC)"""
    return f"bluegreen-report-{endpoint}-{datetime.fromtimestamp(at, UTC):%Y%m%d-%H%M}.html"


# --- before and after ---------------------------------------------------------------------


def _shares(values: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(dict(values or {}).items()) if int(v)}


def _undone(s: Snapshot | None, c: Change) -> tuple[Snapshot | None, bool]:
    """The state before change `c`, given the state after it; False when unknown."""
    b, a = c.before or {}, c.after or {}
    if c.action == "create_endpoint":
        return None, True
    if c.action == "delete_endpoint":
        deployments: dict[str, int | None] = {str(d): None for d in b.get("deployments") or []}
        return Snapshot(_shares(b.get("traffic")), _shares(b.get("mirror")), deployments), True
    if s is None:
        return None, False
    traffic, mirror, counts = dict(s.traffic), dict(s.mirror), dict(s.deployments)
    if c.action == "traffic":
        traffic, mirror = _shares(b.get("traffic")), _shares(b.get("mirror"))
    elif c.action == "scale" and "deployment" in a:
        counts[str(a["deployment"])] = b.get("instance_count")
    elif c.action == "create_deployment":
        counts.pop(str(a.get("deployment")), None)
    elif c.action == "delete" and "deployment" in b:
        counts[str(b["deployment"])] = b.get("instance_count")
    models = {k: v for k, v in s.models.items() if k in counts}
    return Snapshot(traffic, mirror, counts, models), True


def _walk_back(
    now: Snapshot | None,
    changes: Sequence[Change],
    outside: Sequence[drift.OutsideChange],
    until: float,
) -> tuple[Snapshot | None, bool]:
    """The state at `until`, from the state now and every change after `until`."""
    events: list[tuple[float, Change | drift.OutsideChange]] = [
        *((c.at, c) for c in changes if c.succeeded and c.at > until),
        *((o.at, o) for o in outside if o.at > until),
    ]
    state, known = now, True
    for _, event in sorted(events, key=lambda e: e[0], reverse=True):
        if isinstance(event, drift.OutsideChange):
            state, known = Snapshot.of_state(event.before), True
        else:
            state, known = _undone(state, event)
    return state, known


# --- the timeline and the plan -----------------------------------------------------------


def _rows(changes: Sequence[Change], outside: Sequence[drift.OutsideChange]) -> list[Row]:
    found = []
    for c in changes:
        words = entry_words(c)
        found.append(
            Row(c.at, c.who, words.what, words.before, words.after, c.reason, c.outcome,
                took_text(c.duration_s))
        )  # fmt: skip
    for o in outside:
        found.append(
            Row(o.at, "outside the dashboard", " and ".join(o.parts) or "state",
                o.before.words(), o.after.words(), f"seen between {_clock(o.since)} and "
                f"{_clock(o.at)}", "noticed", "–", outside=True)
        )  # fmt: skip
    return sorted(found, key=lambda r: r.at)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().strftime("%H:%M:%S")


def _evidence_row(e: Evidence) -> dict[str, str]:
    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:,.0f} ms"

    return {
        "deployment": e.deployment,
        "requests": count_text(e.requests),
        "live": count_text(e.live + e.unsplit),
        "mirrored": count_text(e.mirrored),
        "errors": count_text(e.errors),
        "error rate": "–" if e.error_rate is None else percent_text(e.error_rate),
        "P50": ms(e.p50_ms),
        "P95": ms(e.p95_ms),
        "P99": ms(e.p99_ms),
    }


def _label(plan: Plan, index: int) -> str:
    return plan.steps[index].label if 0 <= index < len(plan.steps) else "not started"


def plan_section(plan: Plan) -> PlanSection:
    steps = []
    for n, step in enumerate(plan.steps):
        g = step.gates
        gates = (
            "none"
            if step.kind == "retire"
            else f"≥ {step.min_minutes:g} min · errors ≤ +{100 * g.max_error_increase:.1f} pp · "
            f"P95 ≤ {g.max_p95_ratio:g}× · ≥ {count_text(g.min_requests)} requests"
        )
        steps.append(
            {"n": str(n + 1), "step": step.label, "gates": gates, "status": step_status(plan, n)}
        )
    moves = []
    for t in plan.transitions:
        verdicts = []
        for v in t.verdicts:
            value, limit = verdict_texts(v)
            verdicts.append(
                {"gate": v.gate, "status": v.status, "value": value, "limit": limit,
                 "words": v.words}
            )  # fmt: skip
        moves.append(
            {
                "at": t.at, "action": t.action, "from": _label(plan, t.from_step),
                "to": _label(plan, t.to_step), "who": t.who, "reason": t.reason,
                "verdicts": verdicts, "evidence": [_evidence_row(e) for e in t.evidence],
            }
        )  # fmt: skip
    return PlanSection(plan, steps, moves)


# --- gathering --------------------------------------------------------------------------


def gather(
    *,
    workspace: str,
    label: str,
    endpoint: str,
    start: float,
    end: float,
    view: EndpointView | None,
    metrics: EndpointMetrics | None,
    generated_by: str,
    plan: Plan | None = None,
    now: float | None = None,
    path: Path | None = None,
) -> Report:
    """The report of `endpoint` from `start` to `end` (seconds since the epoch).

    `view` is the endpoint as read now (None when it is gone), `metrics` what the caller
    read for `report_window(start, end)` (None when it could not). `workspace` is the
    workspace's key in the store, `label` how the report names it.
    """
    now = time.time() if now is None else now
    changes = history.list_changes(workspace=workspace, endpoint=endpoint, since=start, path=path)
    outside = drift.outside_changes(workspace=workspace, endpoint=endpoint, since=start, path=path)
    current = Snapshot.of_view(view) if view is not None else None
    before, known = _walk_back(current, changes, outside, start)
    how = "from the audit log" if changes or outside else "read now"
    if not known or (before is None and view is None and not changes):
        seen = drift.state_at(workspace=workspace, endpoint=endpoint, at=start, path=path)
        before, known, how = (
            (Snapshot.of_state(seen), True, "last seen by the dashboard")
            if seen
            else (None, False, "")
        )
    if before is not None and current is not None:  # what was read now names the models
        models = {n: current.models[n] for n in before.deployments if n in current.models}
        before = replace(before, models=models)
    if end >= now - 1:
        after = Side(now, current, "read now")
    else:
        at_end, end_known = _walk_back(current, changes, outside, end)
        after = Side(end, at_end, "from the audit log", end_known)
    in_range = [c for c in changes if c.at <= end]
    noticed = [o for o in outside if o.at <= end]
    comparisons = [
        c for c in plan_store.list_comparisons(workspace, endpoint, since=start, path=path)
        if c.at <= end
    ]  # fmt: skip
    totals, problems, mirror_dimension = [], [], True
    if metrics is not None:
        spelled: dict[str, str] = {}  # Azure may lower-case the names in metrics
        for name in (
            *(before.deployments if before else ()), *(current.deployments if current else ()),
            *(str(d) for d in metrics.requests["deployment"].dropna().unique()),
        ):  # fmt: skip
            spelled.setdefault(name.lower(), name)
        for name in sorted(spelled.values()):
            e = evidence_from_metrics(
                name, requests=metrics.requests, status=metrics.status,
                latency=metrics.latency, window=metrics.window,
            )  # fmt: skip
            totals.append(_evidence_row(e))
        problems = [p for k, p in metrics.problems.items() if k in ("traffic", "status")]
        mirror_dimension = metrics.mirror_dimension
    return Report(
        workspace=label,
        endpoint=endpoint,
        scoring_uri=view.scoring_uri if view is not None else "",
        start=start,
        end=min(end, now),
        generated_at=now,
        generated_by=generated_by,
        before=Side(start, before, how, known),
        after=after,
        timeline=_rows(in_range, noticed),
        changes=in_range,
        totals=totals,
        comparisons=comparisons,
        plan=plan_section(plan) if plan is not None else None,
        problems=problems,
        mirror_dimension=mirror_dimension,
    )
