"""Following a long-running change on the page: state and elapsed time, then the outcome."""

from __future__ import annotations

import time

import streamlit as st

from rollout.changes import Operation
from rollout.errors import RolloutError

# How often the poller is asked whether it is done: a local check (the SDK's own thread
# polls the service), so often enough that an operation's end shows within a tenth.
_POLL_S = 0.1
_TIMEOUT_S = 900.0


def follow(operation: Operation, *, label: str) -> bool:
    """Show an operation's progress until it ends; True when it succeeded.

    Streamlit keeps the rest of the page rendered while this status box updates.
    """
    with st.status(f"{label}…", expanded=True) as box:
        line = st.empty()
        shown = ""
        while not operation.done() and operation.elapsed < _TIMEOUT_S:
            text = f"State: **{operation.status()}** · {operation.elapsed:.0f} s elapsed"
            if text != shown:
                line.write(text)
                shown = text
            time.sleep(_POLL_S)
        try:
            operation.result(timeout=1.0)
        except RolloutError as exc:
            line.write(f"Failed after {operation.elapsed:.0f} s")
            box.update(label=f"{label}: failed", state="error", expanded=True)
            st.error(str(exc))
            return False
        line.write(f"Done in {operation.elapsed:.1f} s")
        box.update(label=f"{label}: done", state="complete", expanded=False)
        return True
