"""Endpoints: every online endpoint of the workspace, its traffic and its deployments."""

from __future__ import annotations

import streamlit as st

from components.endpoint_views import deployments_table, endpoint_summary
from components.selection import select_endpoint
from components.workspace import current_workspace
from rollout.endpoints import list_endpoints
from rollout.errors import RolloutError

st.title("Endpoints")
ws = current_workspace()
if ws is None:
    st.stop()
try:
    endpoints = list_endpoints(ws)
except RolloutError as exc:
    st.error(str(exc))
    st.stop()

selected = select_endpoint(endpoints)
if selected is None:
    st.stop()
st.caption("The selected endpoint is the one the Traffic, Test and Deployments pages work on.")

for endpoint in [selected, *(e for e in endpoints if e.name != selected.name)]:
    with st.container(border=True):
        endpoint_summary(endpoint, selected=endpoint.name == selected.name)
        deployments_table(endpoint)
