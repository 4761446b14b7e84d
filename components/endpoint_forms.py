"""Creating and deleting an endpoint: a form checked as it is filled in, and a dialog showing
before → after that runs the change (change_flow.py), as deployment_actions.py does for a
deployment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import streamlit as st

from components.change_flow import flash, run_change
from components.deployment_actions import confirmation_problem
from components.selection import focus_endpoint
from rollout import deploy, rules
from rollout.deploy import AUTH_MODES, AuthMode
from rollout.endpoints import EndpointView
from rollout.workspace import Workspace

_PENDING = "endpoint_action_pending"
_RESET = "new_endpoint_reset"
_FIELDS = ("new_endpoint_name", "new_endpoint_description")
_AUTH_LABELS = {"key": "Key", "aml_token": "AML token"}
_BUSY_STATES = ("Creating", "Updating", "Deleting")


@dataclass(frozen=True)
class PendingEndpoint:
    """An endpoint change waiting for the user's confirmation in a dialog."""

    action: Literal["create", "delete"]
    name: str
    auth_mode: AuthMode = "key"
    description: str = ""


def _clear_pending() -> None:
    st.session_state.pop(_PENDING, None)


def _problems_text(messages: Sequence[str]) -> str:
    return "\n".join(f"- {m}" for m in messages)


# --- create ---------------------------------------------------------------------------------


def create_endpoint_form(existing: Sequence[str], read_only: str | None) -> None:
    """Name (checked against Azure's rules and the endpoints there are), auth mode, description."""
    if st.session_state.pop(_RESET, False):
        # Emptied once the endpoint was created (before the fields are drawn, so it shows).
        for key in _FIELDS:
            st.session_state[key] = ""
    name = st.text_input(
        "Endpoint name",
        key="new_endpoint_name",
        placeholder="my-endpoint",
        help="3 to 32 letters, digits and single dashes, starting with a letter. Azure wants it "
        "unique in the region, not only in the workspace.",
    ).strip()
    naming = [v.message for v in rules.check_new_endpoint(existing, name)] if name else []
    if naming:
        st.error(_problems_text(naming), icon=":material/block:")
    elif name:
        st.caption(f":material/check: '{name}' is a valid name, not taken in this workspace.")
    auth_mode = st.radio(
        "Auth mode",
        AUTH_MODES,
        format_func=lambda m: _AUTH_LABELS[m],
        key="new_endpoint_auth",
        horizontal=True,
        help="Key: callers send one of the endpoint's two keys. AML token: callers send a "
        "token that expires (ml_client.online_endpoints.get_keys gives one).",
    )
    description = st.text_area("Description", key="new_endpoint_description", height=80)
    problems = (
        [v.message for v in deploy.check_endpoint_form(existing, name, auth_mode, description)]
        if name
        else []
    )
    rest = [m for m in problems if m not in naming]
    if rest:
        st.error(_problems_text(rest), icon=":material/block:")
    blocker = read_only or (
        "Type a name first." if not name else "Fix what is listed first." if problems else None
    )
    if read_only:
        st.caption(":material/lock: Read-only mode: disabled.")
    if st.button(
        "Create endpoint…",
        key="new_endpoint_open",
        icon=":material/add_circle:",
        type="primary",
        disabled=blocker is not None,
        help=blocker,
    ):
        st.session_state[_PENDING] = PendingEndpoint("create", name, auth_mode, description)


@st.dialog("Create endpoint", on_dismiss=_clear_pending)
def _create_dialog(ws: Workspace, existing: Sequence[str], pending: PendingEndpoint) -> None:
    name = pending.name
    st.markdown(
        f"A new managed online endpoint **{name}**, with no deployments and no traffic yet."
    )
    st.table(
        pd.DataFrame(
            [
                {
                    "": "endpoints",
                    "before": ", ".join(existing) or "none",
                    "after": ", ".join(sorted([*existing, name])),
                },
                {"": "auth mode", "before": "", "after": _AUTH_LABELS[pending.auth_mode]},
                {"": "description", "before": "", "after": pending.description or "-"},
            ]
        ).set_index("")
    )
    reason = st.text_input("Reason (for the audit log)", key="new_endpoint_reason")
    confirm, cancel = st.columns(2)
    if cancel.button("Cancel", key="new_endpoint_cancel", width="stretch"):
        _clear_pending()
        st.rerun()
    if confirm.button("Create", key="new_endpoint_confirm", type="primary", width="stretch"):

        def created() -> None:
            focus_endpoint(name)
            st.session_state[_RESET] = True

        run_change(
            ws,
            endpoint=name,
            action="create_endpoint",
            start=lambda: deploy.begin_create_endpoint(
                ws, name, auth_mode=pending.auth_mode, description=pending.description
            ),
            label=f"Creating endpoint '{name}'",
            before={"endpoint": name, "exists": False},
            after={
                "endpoint": name,
                "auth_mode": pending.auth_mode,
                "description": pending.description,
            },
            reason=reason or "",
            done=f"Endpoint '{name}' was created. Add its first deployment under New deployment.",
            clear=_clear_pending,
            whole_workspace=True,
            on_success=created,
        )


# --- delete ---------------------------------------------------------------------------------


def delete_blocker(endpoint: EndpointView, read_only: str | None) -> str | None:
    """Why the endpoint cannot be deleted from here now, or None."""
    if read_only:
        return read_only
    if endpoint.state in _BUSY_STATES:
        return f"endpoint '{endpoint.name}' is {endpoint.state.lower()}; wait until it ends"
    return None


def delete_endpoint_control(endpoint: EndpointView, read_only: str | None) -> None:
    names = [d.name for d in endpoint.deployments]
    gone = f" and its deployments {', '.join(names)}" if names else " (it has no deployments)"
    st.markdown(
        f"Deletes endpoint **{endpoint.name}**{gone}: every instance stops and its scoring URI "
        "stops answering. It cannot be undone."
    )
    blocker = delete_blocker(endpoint, read_only)
    if blocker == read_only and read_only:
        st.caption(":material/lock: Read-only mode: disabled.")
    elif blocker:
        st.caption(f":material/block: Cannot delete now: {blocker}")
    if st.button(
        "Delete endpoint…",
        key="endpoint_delete_open",
        icon=":material/delete_forever:",
        disabled=blocker is not None,
        help=blocker,
    ):
        st.session_state[_PENDING] = PendingEndpoint("delete", endpoint.name)


@st.dialog("Delete endpoint", on_dismiss=_clear_pending)
def _delete_dialog(ws: Workspace, endpoints: Sequence[EndpointView], target: EndpointView) -> None:
    names = [e.name for e in endpoints]
    deployments = [d.name for d in target.deployments]
    st.markdown(
        f"Deleting **{target.name}** deletes its {len(deployments)} deployment(s) with it. "
        "It cannot be undone."
    )
    st.table(
        pd.DataFrame(
            [
                {
                    "": "endpoints",
                    "before": ", ".join(names),
                    "after": ", ".join(n for n in names if n != target.name) or "none",
                },
                {
                    "": f"deployments of {target.name}",
                    "before": ", ".join(deployments) or "none",
                    "after": "none",
                },
            ]
        ).set_index("")
    )
    typed = st.text_input(f"Type **{target.name}** to confirm", key="endpoint_delete_typed")
    reason = st.text_input("Reason (for the audit log)", key="endpoint_delete_reason")
    confirm, cancel = st.columns(2)
    if cancel.button("Cancel", key="endpoint_delete_cancel", width="stretch"):
        _clear_pending()
        st.rerun()
    # Never disabled, the name checked on the click: see deployment_actions._delete_dialog.
    clicked = confirm.button(
        "Delete", key="endpoint_delete_confirm", type="primary", width="stretch"
    )
    if clicked and (problem := confirmation_problem(typed, target.name)):
        st.error(problem, icon=":material/block:")
    elif clicked:
        run_change(
            ws,
            endpoint=target.name,
            action="delete_endpoint",
            start=lambda: deploy.begin_delete_endpoint(ws, target.name),
            label=f"Deleting endpoint '{target.name}'",
            before={
                "endpoint": target.name,
                "deployments": deployments,
                "traffic": dict(target.traffic),
                "mirror": dict(target.mirror),
            },
            after={"endpoint": target.name, "deleted": True},
            reason=reason or "",
            done=f"Endpoint '{target.name}' and its deployments were deleted.",
            clear=_clear_pending,
            whole_workspace=True,
            on_success=lambda: focus_endpoint(None),
        )


def open_pending_dialog(
    ws: Workspace, endpoints: Sequence[EndpointView], read_only: str | None
) -> None:
    """Open the dialog of the endpoint change waiting for confirmation, if any."""
    pending: PendingEndpoint | None = st.session_state.get(_PENDING)
    if pending is None:
        return
    if read_only:
        # Turned on since the button was pressed: refuse rather than ask.
        _clear_pending()
        flash("error", f"Nothing was changed: {read_only}")
        st.rerun()
    if pending.action == "create":
        _create_dialog(ws, [e.name for e in endpoints], pending)
        return
    target = next((e for e in endpoints if e.name == pending.name), None)
    if target is None:
        _clear_pending()
        return
    _delete_dialog(ws, endpoints, target)
