"""The workspace picker in the sidebar, and the cached connection every page uses."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from rollout.errors import RolloutError
from rollout.workspace import Workspace, connect_emulator


@st.cache_resource(show_spinner="Connecting to the local emulator…")
def _emulator_workspace(state_dir: str) -> Workspace:
    return connect_emulator(Path(state_dir))


def current_workspace() -> Workspace | None:
    """The connected workspace, or None after showing why it could not connect."""
    state_dir = os.environ.get("EMULATOR_STATE_DIR", ".emulator")
    try:
        return _emulator_workspace(str(Path(state_dir).resolve()))
    except RolloutError as exc:
        st.error(f"Could not connect to the local emulator: {exc}")
        return None


def workspace_sidebar() -> None:
    with st.sidebar:
        st.subheader("Workspace")
        ws = current_workspace()
        if ws is not None:
            st.success(ws.label, icon=":material/check_circle:")
            st.caption(
                f"Subscription `{ws.subscription_id}` · resource group `{ws.resource_group}`"
            )
