"""Traffic: move live and mirror traffic between an endpoint's deployments, safely."""

from __future__ import annotations

import streamlit as st

from components import traffic_editor
from components.selection import endpoint_in_focus
from components.workspace import read_only_reason

st.title("Traffic")
ws, endpoint = endpoint_in_focus()
traffic_editor.show_flash()
if not endpoint.deployments:
    st.info(f"{endpoint.name} has no deployments yet: create one, then give it traffic here.")
    st.stop()

read_only = read_only_reason()
if read_only:
    st.info(read_only, icon=":material/lock:")
editor, summary = st.columns([3, 2], gap="large")
with editor:
    edit = traffic_editor.edit(ws, endpoint, read_only=read_only)
with summary:
    traffic_editor.current_split(endpoint)
    problems = traffic_editor.review(edit)
    traffic_editor.actions(ws, edit, problems=problems, read_only=read_only)
