"""Endpoints: every online endpoint of the workspace, its traffic and its deployments."""

from __future__ import annotations

import streamlit as st

from components import loading
from components.endpoint_views import deployments_table, endpoint_summary
from components.selection import all_endpoints

st.title("Endpoints")
ws, endpoints, selected = all_endpoints()
if selected is None:
    st.stop()
st.caption("The selected endpoint is the one the Traffic, Test and Deployments pages work on.")

shown = [selected, *(e for e in endpoints if e.name != selected.name)]
ready = loading.ready_instances(ws, shown)
for endpoint in shown:
    with st.container(border=True):
        endpoint_summary(endpoint, selected=endpoint.name == selected.name)
        counts = ready.get(endpoint.name)
        deployments_table(
            endpoint, counts, ready_read=counts is not None or not endpoint.deployments
        )
