"""The traffic editor: live and mirror sliders checked as they move, applied through a dialog.

The editor works from a snapshot of the endpoint's traffic, taken when the page first shows
the endpoint and kept in session state. A rerun while the sliders move does not refresh it:
the snapshot is what Apply sends as `expected_*`, so a change someone else made since then is
refused as a Conflict instead of being overwritten. The snapshot is refreshed on Reset,
after an apply, and after a Conflict (to the state that caused it).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import streamlit as st

from components import loading
from components.operation import follow
from components.split import split_figure
from components.workspace import read_only_reason
from rollout import history, traffic_change
from rollout.endpoints import DeploymentView, EndpointView, weight
from rollout.rules import MAX_MIRROR_PERCENT, MAX_TRAFFIC_PERCENT, TrafficPlan
from rollout.traffic_change import Outcome, TrafficState, change_rows, rollback_source
from rollout.views import describe, state_badge
from rollout.workspace import Workspace

log = logging.getLogger(__name__)

_PENDING = "traffic_pending"
_FLASH = "traffic_flash"
_REASON = "traffic_reason"
_NO_MIRROR = ""
_CHART = {"displayModeBar": False, "staticPlot": True}


# --- plain values (no Streamlit) ---------------------------------------------------------


def presets(deployments: Sequence[str]) -> list[tuple[str, dict[str, int]]]:
    """Useful live splits as (label, traffic): the rollout steps for two deployments
    ('90/10' is first 90%, second 10%), all-to-one otherwise."""
    names = list(deployments)
    if len(names) == 2:
        a, b = names
        return [
            (f"{x}/{MAX_TRAFFIC_PERCENT - x}", {a: x, b: MAX_TRAFFIC_PERCENT - x})
            for x in (100, 90, 50, 0)
        ]
    found = [
        (f"All to {d}", {n: MAX_TRAFFIC_PERCENT if n == d else 0 for n in names}) for d in names
    ]
    if len(names) == 1:
        found.append(("Disable traffic", {names[0]: 0}))
    return found


@dataclass(frozen=True)
class Pending:
    """A change waiting for confirmation in the dialog."""

    workspace: str
    before: TrafficState
    after: TrafficState
    title: str
    note: str = ""
    warnings: tuple[str, ...] = ()  # the capacity checks' words (components/evidence_panel.py)


# What a change would overload, in words: (before, after) -> warnings.
CapacityCheck = Callable[[TrafficState, TrafficState], Sequence[str]]


@dataclass(frozen=True)
class EditorKeys:
    """Session-state keys of one endpoint's editor (per workspace, so they never mix)."""

    scope: str

    @classmethod
    def of(cls, workspace: str, endpoint: str) -> EditorKeys:
        return cls(f"traffic:{workspace}:{endpoint}")

    def live(self, deployment: str) -> str:
        return f"{self.scope}:live:{deployment}"

    def rest(self, deployment: str) -> str:
        return f"{self.scope}:rest:{deployment}"

    def preset(self, index: int) -> str:
        return f"{self.scope}:preset:{index}"

    @property
    def mirror_target(self) -> str:
        return f"{self.scope}:mirror-target"

    @property
    def mirror_percent(self) -> str:
        return f"{self.scope}:mirror-percent"

    @property
    def snapshot(self) -> str:
        return f"{self.scope}:snapshot"

    @property
    def reset(self) -> str:
        return f"{self.scope}:reset"

    @property
    def apply(self) -> str:
        return f"{self.scope}:apply"

    @property
    def rollback(self) -> str:
        return f"{self.scope}:rollback"

    @property
    def reload(self) -> str:
        return f"{self.scope}:reload"


# --- applying a change (the flow is rollout.traffic_change's; progress on the page) --------


def apply_change(
    ws: Workspace,
    before: TrafficState,
    after: TrafficState,
    *,
    reason: str = "",
    undo_of: int | None = None,
) -> Outcome:
    """Send `after` (refused as a Conflict unless the endpoint still has `before`), with its
    progress on the page; what is read back is what the pages show next."""

    endpoint = after.endpoint

    def keep(view: EndpointView | None) -> None:
        if view is None:
            loading.invalidate(ws, endpoint)
        else:
            loading.reads(ws).remember(view)

    return traffic_change.apply(
        ws,
        before,
        after,
        reason=reason,
        undo_of=undo_of,
        follow=lambda operation: follow(
            operation, label=f"Updating the traffic of {after.endpoint}"
        ),
        keep=keep,
    )


# --- the editor on the page --------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """What the editor holds: the snapshot it started from and the plan on the sliders."""

    keys: EditorKeys
    loaded: TrafficState
    now: TrafficState
    planned: TrafficState


def show_flash() -> None:
    """The outcome of the last apply, once, after the dialog closed."""
    flash = st.session_state.pop(_FLASH, None)
    if not flash:
        return
    kind, message = flash
    show = {"succeeded": st.success, "conflict": st.warning}.get(kind, st.error)
    show(message)


def current_split(endpoint: EndpointView) -> None:
    """The traffic in force now, as a bar."""
    st.markdown(f"**In force now** · {state_badge(endpoint.state)}")
    if endpoint.live_total or endpoint.mirror:
        st.plotly_chart(
            split_figure(endpoint.traffic, endpoint.mirror),
            config=_CHART,
            key=f"traffic-now-{endpoint.name}",
        )
    else:
        st.warning(
            "No deployment has live traffic: routed requests get 404 until traffic is set.",
            icon=":material/block:",
        )


def edit(ws: Workspace, endpoint: EndpointView, *, read_only: str | None) -> Edit:
    """Sliders for every deployment's live traffic and the mirror; returns the plan."""
    keys = EditorKeys.of(ws.key, endpoint.name)
    now = TrafficState.of(endpoint)
    loaded = _loaded(keys, now)
    state = st.session_state
    disabled = read_only is not None
    by_name = {d.name: d for d in endpoint.deployments}

    st.markdown("**Live traffic**")
    for name in loaded.deployments:
        st.markdown(_deployment_line(name, by_name.get(name)))
        st.slider(
            f"Live traffic to {name} (%)",
            min_value=0,
            max_value=MAX_TRAFFIC_PERCENT,
            step=1,
            format="%d%%",
            key=keys.live(name),
            disabled=disabled,
            label_visibility="collapsed",
        )

    traffic = {name: int(state[keys.live(name)]) for name in loaded.deployments}
    total = sum(traffic.values())
    colour = "green" if total in (0, MAX_TRAFFIC_PERCENT) else "red"
    st.markdown(f"Live total **:{colour}[{total}%]** of {MAX_TRAFFIC_PERCENT}%")
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(_presets_label(loaded.deployments))
        for index, (label, split) in enumerate(presets(loaded.deployments)):
            st.button(
                label,
                key=keys.preset(index),
                help=describe(split, {}),
                on_click=_set_live,
                args=(keys, split),
                disabled=disabled,
            )
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown("Give the rest to")
        for name in loaded.deployments:
            st.button(
                name,
                key=keys.rest(name),
                help=f"Set {name} to whatever the other deployments leave of 100%",
                on_click=_give_rest,
                args=(keys, loaded, name),
                disabled=disabled,
            )

    st.markdown("**Mirror traffic** (a copy of live requests; responses are discarded)")
    target_col, percent_col = st.columns([1, 2], vertical_alignment="bottom")
    with target_col:
        target = st.selectbox(
            "Mirror to",
            [_NO_MIRROR, *loaded.deployments],
            format_func=lambda v: v or "none",
            key=keys.mirror_target,
            disabled=disabled or endpoint.kubernetes,
        )
    with percent_col:
        st.slider(
            "Share of live requests mirrored (%)",
            min_value=0,
            max_value=MAX_MIRROR_PERCENT,
            step=1,
            format="%d%%",
            key=keys.mirror_percent,
            disabled=disabled or not target or endpoint.kubernetes,
            help=f"Azure mirrors at most {MAX_MIRROR_PERCENT}% of live requests.",
        )
        if endpoint.kubernetes:
            st.caption(
                f"Mirror traffic is off: {endpoint.name} is a Kubernetes online endpoint "
                f"({endpoint.compute_label}), and Azure does not mirror traffic on those."
            )
        else:
            st.caption(
                f"Stops at {MAX_MIRROR_PERCENT}%: Azure caps mirror traffic at "
                f"{MAX_MIRROR_PERCENT}% of live requests."
            )
    percent = int(state[keys.mirror_percent])
    mirror = {target: percent} if target and percent else {}
    planned = TrafficState(
        endpoint.name, loaded.deployments, traffic, mirror, kubernetes=endpoint.kubernetes
    )
    return Edit(keys=keys, loaded=loaded, now=now, planned=planned)


def review(edit: Edit) -> list[str]:
    """The plan as a bar, and every rule it breaks in words; returns those reasons."""
    plan = edit.planned.plan()
    same = edit.planned.same_traffic(edit.loaded)
    st.markdown("**After this change**" + (" · :gray[no change yet]" if same else ""))
    st.plotly_chart(
        split_figure(dict(plan.traffic), dict(plan.mirror)),
        config=_CHART,
        key=f"traffic-after-{edit.keys.scope}",
    )
    problems = [v.message for v in plan.violations()]
    for problem in problems:
        st.error(_sentence(problem), icon=":material/block:")
    if not problems and plan.total == 0 and not same:
        st.warning(
            "Every deployment at 0% disables live traffic: requests without a deployment "
            "header will get 404.",
            icon=":material/block:",
        )
    return problems


def actions(
    ws: Workspace,
    edit: Edit,
    *,
    problems: list[str],
    read_only: str | None,
    capacity: CapacityCheck | None = None,
) -> None:
    """Apply, Roll back and Reset; Apply and Roll back open the confirmation dialog, which
    shows what `capacity` warns of the change."""

    def warnings(before: TrafficState, after: TrafficState) -> tuple[str, ...]:
        return tuple(capacity(before, after)) if capacity is not None else ()

    keys, loaded = edit.keys, edit.loaded
    if not loaded.same_traffic(edit.now) or loaded.deployments != edit.now.deployments:
        st.warning(
            f"The traffic of {loaded.endpoint} changed since this page loaded it: it is now "
            f"{describe(edit.now.traffic, edit.now.mirror)} (you are editing from "
            f"{describe(loaded.traffic, loaded.mirror)}). Reset to start from the new state; "
            "Apply would be refused.",
            icon=":material/sync_problem:",
        )
    changed = not edit.planned.same_traffic(loaded)
    source, source_problem = _rollback_source(ws, loaded.endpoint)
    restore = (
        TrafficState.from_record(loaded.endpoint, loaded.deployments, source.before)
        if source
        else None
    )
    # The traffic to restore is checked against the deployments there are now, as the
    # sliders' plan is: after a deployment it names was deleted, Azure would refuse it.
    restore_problems = [v.message for v in restore.plan().violations()] if restore else []

    with st.container(horizontal=True, vertical_alignment="center"):
        if st.button(
            "Apply…",
            key=keys.apply,
            type="primary",
            icon=":material/check:",
            disabled=read_only is not None or bool(problems) or not changed,
        ):
            st.session_state[_PENDING] = Pending(
                ws.key,
                loaded,
                edit.planned,
                "Apply this traffic change?",
                warnings=warnings(loaded, edit.planned),
            )
        can_roll_back = (
            restore is not None and not restore.same_traffic(loaded) and not restore_problems
        )
        if (
            st.button(
                "Roll back…",
                key=keys.rollback,
                icon=":material/undo:",
                disabled=read_only is not None or not can_roll_back,
            )
            and source is not None
            and restore is not None
        ):
            note = f"This restores the traffic in force before the change {_when(source)}."
            left = TrafficState.from_record(loaded.endpoint, loaded.deployments, source.after)
            if not left.same_traffic(loaded):
                note += (
                    " The traffic was changed elsewhere since then: that change left "
                    f"{describe(left.traffic, left.mirror)}."
                )
            st.session_state[_PENDING] = Pending(
                ws.key,
                loaded,
                restore,
                "Roll back the last traffic change?",
                note=note,
                warnings=warnings(loaded, restore),
            )
        st.button(
            "Reset",
            key=keys.reload,
            icon=":material/refresh:",
            type="tertiary",
            help="Read the endpoint again and set the sliders to the traffic in force",
            on_click=_reload,
            args=(ws, keys, loaded.endpoint),
        )

    if read_only is not None:
        st.caption(read_only)
    elif problems:
        st.caption("Apply is disabled until the problems above are fixed.")
    elif not changed:
        st.caption("Move a slider or pick a preset to prepare a change.")
    if read_only is None:
        if source_problem:
            st.caption(f"Roll back is unavailable: {source_problem}")
        elif source is None or restore is None:
            st.caption("Roll back: no traffic change has been applied from this dashboard yet.")
        elif restore_problems:
            st.caption(
                f"Roll back is unavailable: the traffic before the change {_when(source)} "
                f"was {describe(restore.traffic, restore.mirror)}, which cannot be applied "
                f"now: {'; '.join(restore_problems)}."
            )
        elif restore.same_traffic(loaded):
            st.caption(
                f"Roll back: the traffic from before the change {_when(source)} is in force."
            )
        else:
            st.caption(
                f"Roll back restores {describe(restore.traffic, restore.mirror)}, the traffic "
                f"before the change {_when(source)}."
            )

    pending = st.session_state.get(_PENDING)
    if isinstance(pending, Pending) and pending.workspace == ws.key:
        if pending.after.endpoint == loaded.endpoint:
            _confirm(ws, pending)
        else:
            st.session_state.pop(_PENDING, None)


# --- helpers ----------------------------------------------------------------------------


def _deployment_line(name: str, deployment: DeploymentView | None) -> str:
    if deployment is None:
        return f"**{name}** :red-badge[no longer exists]"
    d = deployment
    now = f"now {d.live}% live" + (f", {d.mirror}% mirror" if d.mirror else "")
    instances = f"{d.instance_count} instance" + ("" if d.instance_count == 1 else "s")
    return f"**{name}** {state_badge(d.state)} :gray[{d.model} · {instances} · {now}]"


def _presets_label(deployments: Sequence[str]) -> str:
    return f"Presets ({'/'.join(deployments)})" if len(deployments) == 2 else "Presets"


def _loaded(keys: EditorKeys, now: TrafficState) -> TrafficState:
    """The snapshot the sliders edit: kept while they are on screen, else taken from `now`."""
    state = st.session_state
    loaded = state.get(keys.snapshot)
    editing = (
        isinstance(loaded, TrafficState)
        and keys.mirror_target in state
        and all(keys.live(d) in state for d in loaded.deployments)
    )
    if not editing or not isinstance(loaded, TrafficState):
        loaded = now
        state[keys.snapshot] = now
        state[keys.reset] = True
    if state.pop(keys.reset, False):
        _set_sliders(keys, loaded)
    return loaded


def _set_sliders(keys: EditorKeys, values: TrafficState) -> None:
    state = st.session_state
    for name in values.deployments:
        state[keys.live(name)] = weight(values.traffic, name)
    target = next(
        (d for d in values.deployments if weight(values.mirror, d)),
        _NO_MIRROR,
    )
    state[keys.mirror_target] = target
    state[keys.mirror_percent] = weight(values.mirror, target) if target else 0


def _give_rest(keys: EditorKeys, loaded: TrafficState, deployment: str) -> None:
    state = st.session_state
    traffic = {d: int(state[keys.live(d)]) for d in loaded.deployments}
    plan = TrafficPlan(loaded.endpoint, loaded.deployments, traffic).rest_of(deployment)
    state[keys.live(deployment)] = plan.traffic[deployment]


def _set_live(keys: EditorKeys, traffic: Mapping[str, int]) -> None:
    for name, share in traffic.items():
        st.session_state[keys.live(name)] = share


def _reload(ws: Workspace, keys: EditorKeys, endpoint: str) -> None:
    loading.invalidate(ws, endpoint)
    st.session_state.pop(keys.snapshot, None)


def _rollback_source(ws: Workspace, endpoint: str) -> tuple[history.Change | None, str]:
    try:
        return rollback_source(history.list_changes(workspace=ws.key, endpoint=endpoint)), ""
    except (sqlite3.Error, OSError, ValueError) as exc:
        return None, f"the audit log could not be read ({exc})"


def _when(change: history.Change) -> str:
    at = datetime.fromtimestamp(change.at).strftime("%Y-%m-%d %H:%M:%S")
    return f"made at {at} by {change.who}"


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _dismiss() -> None:
    st.session_state.pop(_PENDING, None)


@st.dialog("Confirm the traffic change", width="medium", on_dismiss=_dismiss)
def _confirm(ws: Workspace, pending: Pending) -> None:
    before, after = pending.before, pending.after
    st.markdown(f"**{pending.title}**")
    if pending.note:
        st.markdown(pending.note)
    st.markdown(
        f"Endpoint **{after.endpoint}**  \n"
        f"Before: {describe(before.traffic, before.mirror)}  \n"
        f"After: {describe(after.traffic, after.mirror)}"
    )
    rows = change_rows(before, after)
    st.table(rows)
    for words in pending.warnings:
        st.warning(_sentence(words), icon=":material/speed:")
    problems = [_sentence(v.message) for v in after.plan().violations()]
    blocked = read_only_reason()
    for problem in [*problems, *([blocked] if blocked else [])]:
        st.error(problem, icon=":material/block:")
    reason = st.text_input("Reason (optional, kept in the audit log)", key=_REASON)
    confirm_col, cancel_col = st.columns(2)
    confirmed = confirm_col.button(
        "Confirm",
        key="traffic_confirm",
        type="primary",
        icon=":material/check:",
        disabled=bool(problems) or blocked is not None or not rows,
        width="stretch",
    )
    if cancel_col.button("Cancel", key="traffic_cancel", width="stretch"):
        st.session_state.pop(_PENDING, None)
        st.rerun()
    if not confirmed:
        return
    outcome = apply_change(ws, before, after, reason=reason.strip())
    keys = EditorKeys.of(ws.key, after.endpoint)
    if outcome.state is not None:
        st.session_state[keys.snapshot] = outcome.state
    if outcome.kind == "succeeded":
        st.session_state[keys.reset] = True
    st.session_state.pop(_PENDING, None)
    st.session_state[_FLASH] = (outcome.kind, outcome.message)
    st.rerun()
