"""A staged promotion plan on the page: create it, see its steps on a timeline with each
gate's verdict and the numbers behind it, and Start / Promote / Abort / Retire it.

The plan itself is rollout/promotion.py's (pure) and lives in rollout/plan_store.py (the
dashboard's SQLite store, next to the audit log, so every session sees the same plan and
each transition is an audit entry). A step's traffic goes through the traffic editor's
change flow (`apply_change`: fresh read, If-Match, lock, progress, read back, audit log);
retiring the baseline through `begin_delete_deployment`. The plan is saved only after its
traffic was applied, and only if no other session moved it in the meantime.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd
import streamlit as st

from components import evidence_panel, loading
from components.operation import follow
from components.traffic_editor import apply_change
from rollout import history, plan_store, promotion
from rollout.changes import begin_delete_deployment
from rollout.compare import count_text, points_text
from rollout.endpoints import EndpointView
from rollout.errors import Conflict, RolloutError, RuleViolation
from rollout.evidence import Evidence
from rollout.gates import Gates, Verdict, overall, verdict_texts
from rollout.promotion import DEFAULT_STEPS, Plan, Step, step_status
from rollout.traffic_change import TrafficState
from rollout.views import describe
from rollout.workspace import Workspace

log = logging.getLogger(__name__)

Action = Literal["start", "promote", "abort", "retire"]
_PENDING = "plan_pending"
_FLASH = "plan_flash"
_REASON = "plan_reason"
STATUS_WORDS = {
    "pass": ":green-badge[:material/check: pass]",
    "fail": ":red-badge[:material/close: fail]",
    "not enough evidence": ":orange-badge[:material/hourglass_top: not enough evidence]",
}
STEP_COLUMNS = ["kind", "percent", "min_minutes", "max_error_pp", "max_p95_ratio", "min_requests"]


@dataclass(frozen=True)
class PendingMove:
    """A plan transition waiting for confirmation in the dialog."""

    action: Action
    plan_id: int
    version: int
    endpoint: str
    reason: str = ""


# --- plain values (no Streamlit) -----------------------------------------------------------


def steps_frame(steps: tuple[Step, ...]) -> pd.DataFrame:
    """The steps as the editor shows them (the error-rate limit in percentage points)."""
    return pd.DataFrame(
        [
            {
                "kind": s.kind,
                "percent": s.percent,
                "min_minutes": s.min_minutes,
                "max_error_pp": round(100 * s.gates.max_error_increase, 4),
                "max_p95_ratio": s.gates.max_p95_ratio,
                "min_requests": s.gates.min_requests,
            }
            for s in steps
        ],
        columns=STEP_COLUMNS,
    )


def steps_from_frame(frame: pd.DataFrame) -> tuple[Step, ...]:
    """Steps from the editor's rows; empty rows are skipped, blank cells take the defaults."""
    steps = []
    default = Gates()
    for row in frame.to_dict("records"):
        kind = row.get("kind")
        if not isinstance(kind, str) or not kind:
            continue

        def value(name: str, fallback: Any, row: dict[str, Any] = row) -> Any:
            v = row.get(name)
            return fallback if v is None or v != v else v  # v != v: NaN

        steps.append(
            Step(
                kind,  # type: ignore[arg-type]  # check_plan refuses an unknown kind in words
                0 if kind == "retire" else int(value("percent", 0)),
                float(value("min_minutes", 0.0)),
                Gates(
                    max_error_increase=float(
                        value("max_error_pp", 100 * default.max_error_increase)
                    )
                    / 100,
                    max_p95_ratio=float(value("max_p95_ratio", default.max_p95_ratio)),
                    min_requests=int(value("min_requests", default.min_requests)),
                ),
            )
        )
    return tuple(steps)


def verdict_value(v: Verdict) -> tuple[str, str]:
    """(value, limit) of a verdict in the gate's own unit (shared with the review report)."""
    return verdict_texts(v)


def target_traffic(plan: Plan, endpoint: EndpointView) -> TrafficState | None:
    """The traffic `plan` wants on `endpoint`; None when it wants nothing (not started)."""
    names = [d.name for d in endpoint.deployments]
    wanted = promotion.wanted_traffic(plan, names)
    if wanted is None:
        return None
    return TrafficState.build(
        endpoint.name,
        names,
        dict(wanted.traffic),
        dict(wanted.mirror),
        kubernetes=endpoint.kubernetes,
    )


# --- reading ------------------------------------------------------------------------------


def open_plan(ws: Workspace, endpoint: EndpointView) -> Plan | None:
    """The endpoint's open plan; stops the page, saying why, when the store cannot be read."""
    try:
        return plan_store.active_plan(ws.key, endpoint.name)
    except (sqlite3.Error, OSError, ValueError) as exc:
        st.error(f"The plans could not be read from the dashboard's store: {exc}")
        st.stop()


def _evidence(ws: Workspace, endpoint: EndpointView, plan: Plan) -> tuple[Evidence, Evidence]:
    """(baseline, candidate) since the step began, from cached Monitor metrics."""
    data = evidence_panel.window_metrics(
        ws, endpoint, start=plan.entered_at, span_s=evidence_panel.DEFAULT_SPAN_S
    )
    for problem in data.problems.values():
        st.error(problem, icon=":material/error:")
    found = evidence_panel.evidence_of(data, [plan.baseline, plan.candidate])
    return found[plan.baseline], found[plan.candidate]


# --- showing ------------------------------------------------------------------------------


def show_flash() -> None:
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        kind, message = flash
        {"success": st.success, "warning": st.warning}.get(kind, st.error)(message)


def last_plan(ws: Workspace, endpoint: EndpointView) -> None:
    """The endpoint's last finished plan, in one line."""
    try:
        plans = plan_store.list_plans(ws.key, endpoint.name)
    except (sqlite3.Error, OSError, ValueError):
        return
    if plans:
        p = plans[-1]
        st.caption(
            f"Last plan: {p.candidate} over {p.baseline}, {p.state} at {p.where()} "
            f"({_when(p.transitions[-1].at) if p.transitions else 'never started'})."
        )


def create_form(ws: Workspace, endpoint: EndpointView, *, read_only: str | None) -> None:
    """Baseline, candidate and editable steps; Create saves the plan (not started yet)."""
    pair = evidence_panel.default_pair(endpoint)
    if pair is None:
        st.info(f"A plan needs two deployments; {endpoint.name} has {len(endpoint.deployments)}.")
        return
    names = [d.name for d in endpoint.deployments]
    st.subheader("New plan")
    base_col, cand_col = st.columns(2)
    baseline = base_col.selectbox(
        "Baseline (serves now)", names, index=names.index(pair[0]), key="plan_baseline"
    )
    candidate = cand_col.selectbox(
        "Candidate (to promote)", names, index=names.index(pair[1]), key="plan_candidate"
    )
    st.markdown(
        "**Steps** · a mirror or live share for the candidate, the minimum time in the step, "
        "and its gates (error-rate increase in percentage points, P95 ratio, requests)"
    )
    edited = st.data_editor(
        steps_frame(DEFAULT_STEPS),
        num_rows="dynamic",
        hide_index=True,
        key="plan_steps",
        column_config={
            "kind": st.column_config.SelectboxColumn(
                "kind", options=["mirror", "live", "retire"], required=True
            ),
            "percent": st.column_config.NumberColumn("percent", min_value=0, max_value=100),
            "min_minutes": st.column_config.NumberColumn("min time (min)", min_value=0.0),
            "max_error_pp": st.column_config.NumberColumn(
                "max error increase (pp)", min_value=0.0, max_value=100.0
            ),
            "max_p95_ratio": st.column_config.NumberColumn("max P95 ratio", min_value=0.01),
            "min_requests": st.column_config.NumberColumn("min requests", min_value=1),
        },
    )
    if st.button(
        "Create plan",
        key="plan_create",
        type="primary",
        icon=":material/add:",
        disabled=read_only is not None,
    ):
        try:
            plan = Plan(
                endpoint.name,
                baseline,
                candidate,
                steps_from_frame(edited),
                workspace=ws.key,
            )
            saved = plan_store.save_plan(plan)
        except RuleViolation as exc:
            for v in exc.violations:
                st.error(_sentence(v.message), icon=":material/block:")
            return
        except (RolloutError, sqlite3.Error, OSError) as exc:
            st.error(f"The plan was not created: {exc}")
            return
        st.session_state[_FLASH] = (
            "success",
            f"Plan {saved.id} created: {candidate} over {baseline} in {len(saved.steps)} steps. "
            "Start it to apply its first step.",
        )
        st.rerun()
    if read_only:
        st.caption(read_only)


def timeline(plan: Plan, *, now: float) -> None:
    """The steps side by side: done, current (with the time in it), next."""
    icons = {
        "done": ":green[:material/check_circle:]",
        "current": ":blue[:material/radio_button_checked:]",
        "next": ":gray[:material/radio_button_unchecked:]",
        "aborted": ":red[:material/cancel:]",
        "skipped": ":gray[:material/block:]",
    }
    columns = st.columns(len(plan.steps))
    for index, (column, step) in enumerate(zip(columns, plan.steps, strict=True)):
        status = step_status(plan, index)
        with column.container(border=status in ("current", "aborted")):
            st.markdown(f"{icons[status]} **{index + 1}. {step.label}**  \n:gray[{status}]")
            if step.kind != "retire":
                g = step.gates
                st.caption(
                    f"≥ {step.min_minutes:g} min · errors ≤ {points_text(g.max_error_increase)}"
                    f" · P95 ≤ {g.max_p95_ratio:g}× · ≥ {count_text(g.min_requests)} requests"
                )
            if status == "current":
                st.caption(f"In this step for {promotion.minutes_in_step(plan, now=now):.1f} min")


def verdicts_table(ws: Workspace, plan: Plan, verdicts: tuple[Verdict, ...]) -> None:
    """Each gate: its verdict, value, limit, and the numbers behind it."""
    if not verdicts:
        return
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(f"**Gates** · overall {STATUS_WORDS[overall(verdicts)]}", width="content")
        # The page reads nothing while nobody interacts (an idle tab costs the workspace
        # nothing): the verdicts move on when asked, from metrics read again for it.
        st.button(
            "Evaluate again",
            key="plan_evaluate",
            icon=":material/refresh:",
            type="tertiary",
            help="Read the endpoint and its metrics again and evaluate the gates",
            on_click=loading.invalidate,
            args=(ws, plan.endpoint),
        )
    for v in verdicts:
        value, limit = verdict_value(v)
        st.markdown(f"{STATUS_WORDS[v.status]} **{v.gate}**: {value} (limit {limit}) · {v.words}")


def transitions_table(plan: Plan) -> None:
    rows = [
        {
            "at": _when(t.at),
            "action": t.action,
            "from": _label(plan, t.from_step),
            "to": _label(plan, t.to_step),
            "who": t.who,
            "reason": t.reason,
            "gates": ", ".join(f"{v.gate}: {v.status}" for v in t.verdicts),
        }
        for t in plan.transitions
    ]
    if rows:
        st.dataframe(rows, hide_index=True, key="plan_transitions")


def show_plan(ws: Workspace, endpoint: EndpointView, plan: Plan, *, read_only: str | None) -> None:
    """The open plan: timeline, the current step's gates, and its controls."""
    now = time.time()
    st.subheader(f"Plan {plan.id}: {plan.candidate} over {plan.baseline}")
    st.caption(f"{plan.where()} · state {plan.state}")
    timeline(plan, now=now)
    verdicts: tuple[Verdict, ...] = ()
    if plan.state == "running" and plan.step is not None and plan.step.kind != "retire":
        try:
            baseline, candidate = _evidence(ws, endpoint, plan)
        except RolloutError as exc:
            st.error(f"The metrics could not be read, so the gates cannot be evaluated: {exc}")
        else:
            verdicts = promotion.evaluate_current(plan, baseline, candidate, now=now)
            verdicts_table(ws, plan, verdicts)
    try:
        wanted = target_traffic(plan, endpoint)
    except RuleViolation as exc:  # e.g. a deployment of the plan was deleted elsewhere
        wanted = None
        st.error(f"This plan's traffic cannot be set on {endpoint.name}: {exc}. Abort it.")
    if wanted is not None and not wanted.same_traffic(TrafficState.of(endpoint)):
        st.warning(
            f"The endpoint's traffic is not what this step wants: it is "
            f"{describe(endpoint.traffic, endpoint.mirror)}, the step wants "
            f"{describe(wanted.traffic, wanted.mirror)} (changed elsewhere?).",
            icon=":material/sync_problem:",
        )
    _controls(ws, endpoint, plan, verdicts, read_only=read_only)
    with st.expander("Transitions", icon=":material/history:"):
        transitions_table(plan)
    pending = st.session_state.get(_PENDING)
    if isinstance(pending, PendingMove):
        if pending.plan_id == plan.id and pending.endpoint == endpoint.name:
            _confirm(ws, endpoint, plan, pending)
        else:
            st.session_state.pop(_PENDING, None)


def _controls(
    ws: Workspace,
    endpoint: EndpointView,
    plan: Plan,
    verdicts: tuple[Verdict, ...],
    *,
    read_only: str | None,
) -> None:
    assert plan.id is not None
    blocked = read_only is not None
    step = plan.step

    def ask(action: Action, reason: str = "") -> None:
        assert plan.id is not None
        st.session_state[_PENDING] = PendingMove(
            action, plan.id, plan.version, endpoint.name, reason
        )

    with st.container(horizontal=True, vertical_alignment="bottom"):
        if plan.state == "ready":
            first = plan.steps[0].label
            if st.button(f"Start: {first}…", key="plan_start", type="primary",
                         icon=":material/play_arrow:", disabled=blocked):  # fmt: skip
                ask("start")
        elif step is not None and step.kind == "retire":
            refusal = "; ".join(
                v.message for v in promotion.check_retire(plan, endpoint.traffic, endpoint.mirror)
            )
            if st.button(f"Retire {plan.baseline}…", key="plan_retire", type="primary",
                         icon=":material/delete:", disabled=blocked or bool(refusal),
                         help=f"Deletes deployment {plan.baseline}"):  # fmt: skip
                ask("retire")
            if refusal:
                st.caption(f"Retire is unavailable: {_sentence(refusal)}")
        elif step is not None:
            passed = overall(verdicts) == "pass"
            reason = ""
            if not passed:
                reason = st.text_input(
                    "Reason to override the gates",
                    # One per step: a reason given to leave one step is not one to leave
                    # the next (the field would keep it and enable Promote there at once).
                    key=f"plan_override_{plan.id}_{plan.current}",
                    placeholder="needed to promote before every gate passes",
                ).strip()
            following = (
                plan.steps[plan.current + 1].label
                if plan.current + 1 < len(plan.steps)
                else "finish"
            )
            if st.button(f"Promote: {following}…", key="plan_promote", type="primary",
                         icon=":material/skip_next:",
                         disabled=blocked or not (passed or reason)):  # fmt: skip
                ask("promote", reason)
        if plan.state == "ready":
            if st.button("Discard", key="plan_discard", icon=":material/close:",
                         disabled=blocked):  # fmt: skip
                ask("abort")
        elif plan.is_open and st.button(f"Abort: {plan.baseline} 100%…", key="plan_abort",
                         icon=":material/undo:", disabled=blocked):  # fmt: skip
            ask("abort")
    if read_only:
        st.caption(read_only)
    elif verdicts and overall(verdicts) != "pass":
        st.caption("Promote is enabled when every gate passes, or with a reason to override.")


# --- moving the plan ----------------------------------------------------------------------


def _moved(
    ws: Workspace, plan: Plan, pending: PendingMove, endpoint: EndpointView, reason: str
) -> Plan:
    """The plan after the pending action (the gates evaluated again, on fresh metrics)."""
    now = time.time()
    if pending.action == "start":
        return promotion.start(plan, now=now, who=ws.who())
    if pending.action == "abort":
        return promotion.abort(plan, now=now, reason=reason, who=ws.who())
    if pending.action == "retire":
        return promotion.retire(plan, now=now, who=ws.who())
    baseline, candidate = _evidence(ws, endpoint, plan)
    # Only the reason given to override on the page overrides: the dialog's optional
    # reason does not turn a gate that failed since the click into a pass.
    override = f"{pending.reason} ({reason})" if pending.reason and reason else pending.reason
    return promotion.promote(
        plan, baseline=baseline, candidate=candidate, now=now, reason=override, who=ws.who()
    )


def _dismiss() -> None:
    st.session_state.pop(_PENDING, None)


_TITLES = {
    "start": "Start the plan",
    "promote": "Promote to the next step",
    "abort": "Abort the plan",
    "retire": "Retire the baseline",
}


@st.dialog("Confirm the plan's step", width="medium", on_dismiss=_dismiss)
def _confirm(ws: Workspace, endpoint: EndpointView, plan: Plan, pending: PendingMove) -> None:
    before = TrafficState.of(endpoint)
    st.markdown(f"**{_TITLES[pending.action]}** · plan {plan.id} for **{endpoint.name}**")
    preview: Plan | None = None
    try:
        if plan.version != pending.version:
            raise Conflict(_moved_elsewhere(plan))
        preview = _moved(ws, plan, pending, endpoint, "")
    except (RolloutError, ValueError) as exc:
        st.error(_sentence(str(exc)), icon=":material/block:")
    discard = pending.action == "abort" and plan.state == "ready"
    after = None
    if preview is not None and not discard:
        try:
            after = target_traffic(preview, endpoint)
        except RuleViolation as exc:
            st.error(_sentence(str(exc)), icon=":material/block:")
            preview = None
    if pending.action == "retire":
        st.markdown(
            f"Deletes deployment **{plan.baseline}** of {endpoint.name}; "
            f"{plan.candidate} keeps {describe(endpoint.traffic, endpoint.mirror)}."
        )
    elif discard:
        st.markdown("Discards the plan; the traffic is left as it is.")
    elif after is not None:
        st.markdown(
            f"Before: {describe(before.traffic, before.mirror)}  \n"
            f"After: {describe(after.traffic, after.mirror)}"
            + ("" if not after.same_traffic(before) else "  \n(no traffic change)")
        )
        warnings = evidence_panel.capacity_warnings(
            ws, endpoint, (before.traffic, before.mirror), (after.traffic, after.mirror)
        )
        evidence_panel.show_capacity(warnings)
    if pending.reason:
        st.markdown(f"Overriding the gates: _{pending.reason}_")
    reason = st.text_input("Reason (optional, kept in the audit log)", key=_REASON)
    ok_col, cancel_col = st.columns(2)
    confirmed = ok_col.button(
        "Confirm",
        key="plan_confirm",
        type="primary",
        icon=":material/check:",
        disabled=preview is None,
        width="stretch",
    )
    if cancel_col.button("Cancel", key="plan_cancel", width="stretch"):
        _dismiss()
        st.rerun()
    if not confirmed:
        return
    kind, message = _carry_out(ws, endpoint, plan, pending, reason.strip(), before, discard)
    _dismiss()
    st.session_state[_FLASH] = (kind, message)
    st.rerun()


def _carry_out(
    ws: Workspace,
    endpoint: EndpointView,
    plan: Plan,
    pending: PendingMove,
    reason: str,
    before: TrafficState,
    discard: bool,
) -> tuple[str, str]:
    """Apply the step's traffic (or delete the baseline), then save the plan."""
    try:
        stored = plan_store.get_plan(pending.plan_id)
        if stored.version != pending.version:
            raise Conflict(_moved_elsewhere(stored))
        moved = _moved(ws, stored, pending, endpoint, reason)
        keep = discard or pending.action == "retire"
        after = None if keep else target_traffic(moved, endpoint)
    except (RolloutError, sqlite3.Error, OSError, ValueError) as exc:
        return "error", f"Nothing was changed: {exc}"
    done = ""
    label = f"plan {plan.id}: {pending.action}"
    if pending.action == "retire":
        ok, done = _delete_baseline(ws, endpoint, plan, reason or label)
        if not ok:
            return "error", done
    elif after is not None and not after.same_traffic(before):
        step = moved.step.label if moved.step is not None else moved.state
        outcome = apply_change(ws, before, after, reason=f"{label} ({step}) {reason}".strip())
        if outcome.kind != "succeeded":
            return "error", f"The plan did not move: {outcome.message}"
        done = outcome.message
    try:
        saved = plan_store.save_plan(moved)
    except (RolloutError, sqlite3.Error, OSError) as exc:
        return "error", f"{done} But the plan could not be saved: {exc}".strip()
    return "success", f"Plan {saved.id} is at {saved.where()} ({saved.state}). {done}".strip()


def _moved_elsewhere(stored: Plan) -> str:
    return (
        f"plan {stored.id} for {stored.endpoint!r} was moved in another session (it is now "
        f"{stored.where()}); nothing was changed, review it and try again"
    )


def _delete_baseline(
    ws: Workspace, endpoint: EndpointView, plan: Plan, reason: str
) -> tuple[bool, str]:
    try:
        operation = begin_delete_deployment(ws, endpoint.name, plan.baseline)
    except RolloutError as exc:
        return False, f"Nothing was changed: {exc}"
    ok = follow(operation, label=f"Deleting '{plan.baseline}'")
    loading.invalidate(ws, endpoint.name)
    try:
        history.record(
            workspace=ws.key,
            endpoint=endpoint.name,
            action="delete",
            before={"deployment": plan.baseline},
            after={"deployment": plan.baseline, "deleted": ok},
            reason=reason,
            outcome="Succeeded" if ok else "Failed",
            who=ws.who(),
        )
    except (sqlite3.Error, OSError) as exc:
        log.warning("audit log not written: %s", exc)
    if not ok:
        return False, f"Deployment '{plan.baseline}' was not deleted; the plan stays at retire."
    return True, f"Deployment '{plan.baseline}' of '{endpoint.name}' was deleted."


# --- helpers ------------------------------------------------------------------------------


def _label(plan: Plan, index: int) -> str:
    return plan.steps[index].label if 0 <= index < len(plan.steps) else "not started"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")
