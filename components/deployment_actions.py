"""One deployment's controls: scale and delete (each confirmed in a dialog showing
before → after, followed to the end and written to the audit log). Its logs are
components/log_view.py's.

A confirmation dialog stays open across reruns through a "pending action" in session
state: the page calls `open_pending_dialog` once per run, the dialog clears it when it
is confirmed, cancelled or dismissed. A finished action leaves a flash message for the
next run, because `st.rerun()` closes the dialog that showed the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import streamlit as st

from components.change_flow import run_change
from rollout import rules
from rollout.changes import Operation, begin_delete_deployment, begin_scale
from rollout.endpoints import DeploymentView, EndpointView
from rollout.workspace import Workspace

_PENDING = "deployment_action_pending"
_BUSY_STATES = ("Creating", "Updating", "Deleting")


@dataclass(frozen=True)
class PendingAction:
    """A change waiting for the user's confirmation in a dialog."""

    action: Literal["scale", "delete"]
    endpoint: str
    deployment: str
    instance_count: int | None = None


# --- the decisions, kept free of Streamlit calls so they can be tested alone -----------------


def delete_refusal(endpoint: EndpointView, deployment: str) -> str | None:
    """Why Azure would refuse to delete `deployment` now (live or mirror traffic), or None."""
    violations = rules.check_delete_deployment(
        endpoint.name, deployment, endpoint.traffic, endpoint.mirror
    )
    return "; ".join(v.message for v in violations) or None


def delete_blocker(
    endpoint: EndpointView, deployment: DeploymentView, read_only: str | None
) -> str | None:
    """Why the Delete button is disabled, or None when it may be offered."""
    if read_only:
        return read_only
    if deployment.state in _BUSY_STATES:
        return f"deployment '{deployment.name}' is {deployment.state.lower()}; wait until it ends"
    return delete_refusal(endpoint, deployment.name)


def scale_blocker(deployment: DeploymentView, wanted: int, read_only: str | None) -> str | None:
    """Why scaling to `wanted` cannot be offered now, or None (the same count is not a change,
    which the control handles by itself)."""
    if read_only:
        return read_only
    if deployment.state in _BUSY_STATES:
        return f"deployment '{deployment.name}' is {deployment.state.lower()}; wait until it ends"
    return out_of_range(wanted)


def out_of_range(wanted: int) -> str | None:
    """'0 instances: it must be 1 to 50', or None for a count Azure accepts."""
    if rules.check_instance_count("", "", wanted):
        return f"{wanted} instances: it must be {rules.MIN_INSTANCES} to {rules.MAX_INSTANCES}"
    return None


def name_matches(typed: str | None, name: str) -> bool:
    """The delete confirmation: the deployment's exact name, surrounding spaces ignored."""
    return (typed or "").strip() == name


def confirmation_problem(typed: str | None, name: str) -> str | None:
    """Why what was typed does not confirm deleting `name`, or None when it does."""
    if name_matches(typed, name):
        return None
    if not (typed or "").strip():
        return f"Type {name!r} in the box above to confirm; nothing was deleted."
    return f"You typed {(typed or '').strip()!r}, not {name!r}; nothing was deleted."


def pending_capacity(deployment: DeploymentView, instances: int) -> int:
    """How many requests may be pending before the deployment answers 429."""
    per_instance = deployment.max_concurrent_requests or rules.DEFAULT_MAX_CONCURRENT_REQUESTS
    return 2 * per_instance * instances


def _clear_pending() -> None:
    st.session_state.pop(_PENDING, None)


def _explain(blocker: str | None, read_only: str | None, verb: str) -> None:
    """Why a control is disabled; read-only mode is explained once, at the top of the page."""
    if blocker is None:
        return
    if blocker == read_only:
        st.caption(":material/lock: Read-only mode: disabled.")
    else:
        st.caption(f":material/block: Cannot {verb} now: {blocker}")


# --- scale ----------------------------------------------------------------------------------


def scale_control(
    endpoint: EndpointView, deployment: DeploymentView, read_only: str | None
) -> None:
    st.markdown("**Scale**")
    # No min_value/max_value: Streamlit would clamp 0 or 99 and say so only in a tooltip;
    # the count is taken as typed and refused below in the app's own words.
    wanted = st.number_input(
        "Instances",
        value=deployment.instance_count or rules.MIN_INSTANCES,
        step=1,
        key=f"scale_count_{endpoint.name}_{deployment.name}",
        help=f"{rules.MIN_INSTANCES} to {rules.MAX_INSTANCES} instances (Azure's limit).",
    )
    blocker = scale_blocker(deployment, int(wanted), read_only)
    now = deployment.instance_count
    st.caption(
        f"Now {now} instance(s): up to {pending_capacity(deployment, now)} requests pending "
        "before it answers 429."
    )
    if blocker is not None and blocker == out_of_range(int(wanted)):
        st.error(f"Cannot scale to {blocker}.", icon=":material/block:")
    else:
        _explain(blocker, read_only, "scale")
    unchanged = int(wanted) == now
    if st.button(
        "Scale…",
        key="scale_open",
        icon=":material/open_in_full:",
        disabled=blocker is not None or unchanged,
        help=blocker or ("Choose another number of instances first." if unchanged else None),
    ):
        st.session_state[_PENDING] = PendingAction(
            "scale", endpoint.name, deployment.name, int(wanted)
        )


@st.dialog("Scale deployment", on_dismiss=_clear_pending)
def _scale_dialog(
    ws: Workspace, endpoint: EndpointView, deployment: DeploymentView, count: int
) -> None:
    before, after = deployment.instance_count, count
    st.markdown(f"Deployment **{deployment.name}** of endpoint **{endpoint.name}**")
    st.table(
        pd.DataFrame(
            [
                {"": "instances", "before": before, "after": after},
                {
                    "": "requests pending before 429",
                    "before": pending_capacity(deployment, before),
                    "after": pending_capacity(deployment, after),
                },
            ]
        ).set_index("")
    )
    reason = st.text_input("Reason (for the audit log)", key="scale_reason")
    confirm, cancel = st.columns(2)
    if cancel.button("Cancel", key="scale_cancel", width="stretch"):
        _clear_pending()
        st.rerun()
    if confirm.button("Scale", key="scale_confirm", type="primary", width="stretch"):
        what = f"Scaling '{deployment.name}' to {after} instance(s)"
        _run(
            ws,
            endpoint,
            action="scale",
            start=lambda: begin_scale(ws, endpoint.name, deployment.name, after),
            label=what,
            before={"deployment": deployment.name, "instance_count": before},
            after={"deployment": deployment.name, "instance_count": after},
            reason=reason or "",
            done=f"'{deployment.name}' of '{endpoint.name}' now has {after} instance(s).",
        )


# --- delete ---------------------------------------------------------------------------------


def delete_control(
    endpoint: EndpointView, deployment: DeploymentView, read_only: str | None
) -> None:
    st.markdown("**Delete**")
    blocker = delete_blocker(endpoint, deployment, read_only)
    if blocker:
        _explain(blocker, read_only, "delete")
    else:
        st.caption("It has no live or mirror traffic, so it can be deleted.")
    if st.button(
        "Delete…",
        key="delete_open",
        icon=":material/delete:",
        disabled=blocker is not None,
        help=blocker,
    ):
        st.session_state[_PENDING] = PendingAction("delete", endpoint.name, deployment.name)


@st.dialog("Delete deployment", on_dismiss=_clear_pending)
def _delete_dialog(ws: Workspace, endpoint: EndpointView, deployment: DeploymentView) -> None:
    names = [d.name for d in endpoint.deployments]
    remaining = [n for n in names if n != deployment.name]
    st.markdown(
        f"Deleting **{deployment.name}** removes its {deployment.instance_count} instance(s) "
        f"and model {deployment.model} from endpoint **{endpoint.name}**. "
        "It cannot be undone."
    )
    st.table(
        pd.DataFrame(
            [
                {
                    "": "deployments",
                    "before": ", ".join(names),
                    "after": ", ".join(remaining) or "none",
                }
            ]
        ).set_index("")
    )
    typed = st.text_input(f"Type **{deployment.name}** to confirm", key="delete_typed")
    reason = st.text_input("Reason (for the audit log)", key="delete_reason")
    confirm, cancel = st.columns(2)
    if cancel.button("Cancel", key="delete_cancel", width="stretch"):
        _clear_pending()
        st.rerun()
    # Never disabled: a text input commits on blur or Enter, so a button enabled by what
    # was typed would take a first click just to commit the text. The name is checked on
    # the click instead.
    clicked = confirm.button("Delete", key="delete_confirm", type="primary", width="stretch")
    if clicked and (problem := confirmation_problem(typed, deployment.name)):
        st.error(problem, icon=":material/block:")
    elif clicked:
        _run(
            ws,
            endpoint,
            action="delete",
            start=lambda: begin_delete_deployment(ws, endpoint.name, deployment.name),
            label=f"Deleting '{deployment.name}'",
            before={
                "deployment": deployment.name,
                "model": deployment.model,
                "instance_count": deployment.instance_count,
                "live": deployment.live,
                "mirror": deployment.mirror,
            },
            after={"deployment": deployment.name, "deleted": True},
            reason=reason or "",
            done=f"Deployment '{deployment.name}' of '{endpoint.name}' was deleted.",
        )


# --- running a confirmed change -------------------------------------------------------------


def _run(
    ws: Workspace,
    endpoint: EndpointView,
    *,
    action: str,
    start: Callable[[], Operation],
    label: str,
    before: dict[str, object],
    after: dict[str, object],
    reason: str,
    done: str,
) -> None:
    run_change(
        ws,
        endpoint=endpoint.name,
        action=action,
        start=start,
        label=label,
        before=before,
        after=after,
        reason=reason,
        done=done,
        clear=_clear_pending,
    )


def open_pending_dialog(ws: Workspace, endpoint: EndpointView) -> None:
    """Open the dialog of the action waiting for confirmation, if it is for this endpoint."""
    pending: PendingAction | None = st.session_state.get(_PENDING)
    if pending is None:
        return
    deployment = next((d for d in endpoint.deployments if d.name == pending.deployment), None)
    if pending.endpoint != endpoint.name or deployment is None:
        _clear_pending()
        return
    if pending.action == "scale" and pending.instance_count is not None:
        _scale_dialog(ws, endpoint, deployment, pending.instance_count)
    elif pending.action == "delete":
        _delete_dialog(ws, endpoint, deployment)
