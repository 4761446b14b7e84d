"""Running a confirmed change from a dialog: start it, follow it, write the audit log, and
leave the outcome for the next run.

Every change made from the dashboard ends here (deployment_actions.py, deploy_forms.py): the
page's reads of what it touched are dropped whatever the outcome, so the next run shows what
the change left; on success the dialog closes (`st.rerun()`) and the outcome is a flash
message shown once at the top of the page; on failure the dialog stays open with the reason,
and whatever `on_failure` adds (a deployment's logs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import streamlit as st

from components import loading
from components.operation import follow
from rollout import history
from rollout.changes import Operation
from rollout.errors import RolloutError
from rollout.workspace import Workspace

_FLASH = "deployment_action_flash"


def flash(kind: Literal["success", "error"], message: str) -> None:
    st.session_state[_FLASH] = (kind, message)


def show_flash() -> None:
    """The outcome of the action the last run finished, once."""
    flashed = st.session_state.pop(_FLASH, None)
    if flashed is None:
        return
    kind, message = flashed
    if kind == "success":
        st.success(message, icon=":material/check_circle:")
    else:
        st.error(message, icon=":material/error:")


def run_change(
    ws: Workspace,
    *,
    endpoint: str,
    action: str,
    start: Callable[[], Operation],
    label: str,
    before: dict[str, object],
    after: dict[str, object],
    reason: str,
    done: str,
    clear: Callable[[], None],
    whole_workspace: bool = False,
    on_success: Callable[[], None] | None = None,
    on_failure: Callable[[], None] | None = None,
    undo_of: int | None = None,
) -> bool:
    """Start the change, follow it, write the audit log; close the dialog when it worked.

    `whole_workspace`: the change adds or removes an endpoint, so every read is dropped,
    not only the endpoint's. `undo_of`: the audit entry this change undoes. Returns False
    when it was refused or failed (the dialog stays).
    """
    started = time.monotonic()
    try:
        # Starting may take a while before there is an operation to follow: local folders
        # are uploaded (Azure) or registered (the emulator) first.
        with st.spinner(f"{label}: sending…"):
            operation = start()
    except RolloutError as exc:
        st.error(f"Nothing was changed: {exc}")
        return False
    ok = follow(operation, label=label)
    # Whatever the outcome, the page reads what the change touched again before it shows it.
    loading.invalidate(ws, None if whole_workspace else endpoint)
    outcome = "Succeeded" if ok else f"Failed: {_failure(operation)}"
    try:
        history.record(
            workspace=ws.key,
            endpoint=endpoint,
            action=action,
            before=before,
            after=after,
            reason=reason,
            outcome=outcome,
            who=ws.who(),
            duration_s=time.monotonic() - started,
            undo_of=undo_of,
        )
    except Exception as exc:  # noqa: BLE001 - the change happened; say the log failed, in words
        st.warning(f"The change was not written to the audit log: {exc}")
    clear()
    if ok:
        if on_success is not None:
            on_success()
        flash("success", done)
        st.rerun()
    if on_failure is not None:
        on_failure()
    st.caption("Close this dialog to go back to the page.")
    return False


def _failure(operation: Operation) -> str:
    try:
        operation.result(timeout=1.0)
    except RolloutError as exc:
        return str(exc)
    return "did not finish"
