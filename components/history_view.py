"""The History page's pieces: the audit log as a table, the changes noticed as made outside
the dashboard, and Undo of one entry (checked against the endpoint now, confirmed, sent
through the same change flow as every other change)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import streamlit as st

from components.change_flow import flash, run_change
from components.traffic_editor import apply_change
from rollout import drift, history
from rollout.changes import begin_delete_deployment, begin_scale
from rollout.endpoints import EndpointView
from rollout.history import Change
from rollout.history_words import entry_words, took_text
from rollout.traffic_change import TrafficState
from rollout.undo import Refusal, Undo, plan_undo
from rollout.workspace import Workspace

ALL = "All endpoints"
MAX_ROWS = 500
_UNDO = "history_undo_pending"
_TABLE = "history_table"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def rows(changes: Sequence[Change], outside: Sequence[drift.OutsideChange]) -> pd.DataFrame:
    """The entries and the outside changes as one table, newest first; `id` is the entry's
    (empty for an outside change, which cannot be undone from here)."""
    found = []
    for c in changes:
        words = entry_words(c)
        found.append(
            {
                "at": c.at, "id": c.id, "when": _when(c.at), "who": c.who,
                "endpoint": c.endpoint, "what": words.what, "before": words.before,
                "after": words.after, "reason": c.reason, "outcome": c.outcome,
                "took": took_text(c.duration_s),
            }
        )  # fmt: skip
    for o in outside:
        found.append(
            {
                "at": o.at, "id": None, "when": f"{_when(o.since)} – {_when(o.at)[11:]}",
                "who": "outside the dashboard", "endpoint": o.endpoint,
                "what": " and ".join(o.parts), "before": o.before.words(),
                "after": o.after.words(), "reason": "", "outcome": "noticed", "took": "–",
            }
        )  # fmt: skip
    frame = pd.DataFrame(found, columns=[
        "at", "id", "when", "who", "endpoint", "what", "before", "after", "reason", "outcome",
        "took",
    ])  # fmt: skip
    frame = frame.sort_values("at", ascending=False, kind="stable").reset_index(drop=True)
    frame["id"] = frame["id"].astype("Int64")
    return frame.drop(columns="at")


def history_view(ws: Workspace, endpoints: Sequence[EndpointView]) -> None:
    try:
        logged = history.endpoints_changed(workspace=ws.key)
    except (sqlite3.Error, OSError) as exc:
        st.error(f"The audit log ({history.history_path()}) could not be read: {exc}")
        return
    names = sorted({*logged, *(e.name for e in endpoints)})
    choice = st.selectbox("Show", [ALL, *names], key="history_endpoint")
    endpoint = None if choice == ALL else choice
    changes = history.list_changes(
        workspace=ws.key, endpoint=endpoint, newest_first=True, limit=MAX_ROWS
    )
    outside = drift.outside_changes(workspace=ws.key, endpoint=endpoint)
    for o in outside[:3]:
        st.warning(o.words()[:1].upper() + o.words()[1:] + ".", icon=":material/warning:")
    if not changes and not outside:
        st.info(
            "No change made from this dashboard yet"
            + ("" if endpoint is None else f" on {endpoint}")
            + "."
        )
        return
    st.caption(
        f"Every change made from this dashboard in {ws.label}, newest first"
        + (f" (the latest {MAX_ROWS})" if len(changes) == MAX_ROWS else "")
        + ", and what was seen to change outside it."
    )
    st.dataframe(
        rows(changes, outside),
        hide_index=True,
        key=_TABLE,
        column_config={"id": st.column_config.NumberColumn("#", format="%d")},
    )
    by_id = {c.id: c for c in changes if c.id is not None}
    number = st.selectbox(
        "Undo an entry",
        [None, *by_id],
        format_func=lambda n: "choose an entry…" if n is None else _entry_label(by_id[n]),
        key="history_undo_entry",
    )
    if number is None:
        return
    change = by_id[number]
    view = next((e for e in endpoints if e.name == change.endpoint), None)
    _undo_control(plan_undo(change, view))


def _entry_label(change: Change) -> str:
    words = entry_words(change)
    return f"#{change.id} · {_when(change.at)} · {change.endpoint} · {words.what}"


def _undo_control(found: Undo | Refusal) -> None:
    number = found.change.id
    if isinstance(found, Refusal):
        st.button(f"Undo #{number}", key="history_undo", disabled=True, help=found.reason)
        st.caption(f":material/block: #{number} cannot be undone: {found.reason}.")
        return
    if st.button(
        f"Undo #{number}: {found.words}…",
        key="history_undo",
        icon=":material/undo:",
        type="primary",
    ):
        st.session_state[_UNDO] = number


def open_pending_dialog(
    ws: Workspace, endpoints: Sequence[EndpointView], read_only: str | None
) -> None:
    number = st.session_state.get(_UNDO)
    if number is None:
        return
    change = history.get_change(int(number))
    if change is None:
        st.session_state.pop(_UNDO, None)
        return
    view = next((e for e in endpoints if e.name == change.endpoint), None)
    _undo_dialog(ws, plan_undo(change, view), view, read_only)


def _clear() -> None:
    st.session_state.pop(_UNDO, None)


@st.dialog("Undo a change", width="large", on_dismiss=_clear)
def _undo_dialog(
    ws: Workspace, found: Undo | Refusal, view: EndpointView | None, read_only: str | None
) -> None:
    change = found.change
    words = entry_words(change)
    st.markdown(f"Entry **#{change.id}** ({_when(change.at)}, {change.who}): {words.what}")
    if isinstance(found, Refusal) or view is None:
        # Checked again on fresh state: it may have stopped applying since the click.
        reason = found.reason if isinstance(found, Refusal) else "the endpoint is gone"
        st.error(f"It cannot be undone now: {reason}.")
        return
    st.markdown(f"This will **{found.words}**.")
    if read_only:
        st.info(read_only)
        return
    reason = st.text_input("Reason (for the audit log)", key="history_undo_reason")
    confirm, cancel = st.columns(2)
    if cancel.button("Cancel", key="history_undo_cancel", width="stretch"):
        _clear()
        st.rerun()
    if not confirm.button("Undo", key="history_undo_confirm", type="primary", width="stretch"):
        return
    why = reason.strip() or f"undo of #{change.id}"
    if found.kind == "traffic":
        assert found.traffic is not None and found.mirror is not None
        before = TrafficState.of(view)
        after = TrafficState.build(view.name, before.deployments, found.traffic, found.mirror)
        outcome = apply_change(ws, before, after, reason=why, undo_of=change.id)
        _clear()
        flash("success" if outcome.kind == "succeeded" else "error", outcome.message)
        st.rerun()
    assert found.deployment is not None
    deployment = found.deployment
    if found.kind == "scale":
        assert found.instance_count is not None
        count = found.instance_count
        now = next(d.instance_count for d in view.deployments if d.name == deployment)
        run_change(
            ws, endpoint=view.name, action="scale",
            start=lambda: begin_scale(ws, view.name, deployment, count),
            label=f"Scaling '{deployment}' to {count} instance(s)",
            before={"deployment": deployment, "instance_count": now},
            after={"deployment": deployment, "instance_count": count},
            reason=why, done=f"'{deployment}' of '{view.name}' has {count} instance(s) again.",
            clear=_clear, undo_of=change.id,
        )  # fmt: skip
        return
    target = next(d for d in view.deployments if d.name == deployment)
    run_change(
        ws, endpoint=view.name, action="delete",
        start=lambda: begin_delete_deployment(ws, view.name, deployment),
        label=f"Deleting '{deployment}'",
        before={
            "deployment": deployment, "model": target.model,
            "instance_count": target.instance_count, "live": target.live, "mirror": target.mirror,
        },
        after={"deployment": deployment, "deleted": True},
        reason=why, done=f"Deployment '{deployment}' of '{view.name}' was deleted.",
        clear=_clear, undo_of=change.id,
    )  # fmt: skip
