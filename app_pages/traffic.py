"""Traffic: move live and mirror traffic between an endpoint's deployments, safely, with the
candidate compared to the baseline beside the controls."""

from __future__ import annotations

import streamlit as st

from components import evidence_panel, traffic_editor
from components.selection import endpoint_in_focus
from components.workspace import read_only_reason
from rollout.traffic_change import TrafficState

st.title("Traffic")
ws, endpoint = endpoint_in_focus()
traffic_editor.show_flash()
if not endpoint.deployments:
    st.info(f"{endpoint.name} has no deployments yet: create one, then give it traffic here.")
    st.stop()


def capacity(before: TrafficState, after: TrafficState) -> list[str]:
    return evidence_panel.capacity_warnings(
        ws, endpoint, (before.traffic, before.mirror), (after.traffic, after.mirror)
    )


evidence_panel.prefetch_capacity(ws, endpoint)
read_only = read_only_reason()
if read_only:
    st.info(read_only, icon=":material/lock:")
editor, summary = st.columns([3, 2], gap="large")
with editor:
    edit = traffic_editor.edit(ws, endpoint, read_only=read_only)
with summary:
    traffic_editor.current_split(endpoint)
    problems = traffic_editor.review(edit)
    if not problems:
        evidence_panel.show_capacity(capacity(edit.loaded, edit.planned))
    traffic_editor.actions(ws, edit, problems=problems, read_only=read_only, capacity=capacity)
st.divider()
evidence_panel.comparison(ws, endpoint)
