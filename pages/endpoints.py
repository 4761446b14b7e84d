"""Endpoints: every online endpoint of the workspace and its deployments."""

from __future__ import annotations

import pandas as pd
import streamlit as st

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
if not endpoints:
    st.info("This workspace has no online endpoints yet.")
for endpoint in endpoints:
    with st.container(border=True):
        st.subheader(endpoint.name)
        live = ", ".join(f"{d} {p}%" for d, p in endpoint.traffic.items() if p) or "none"
        mirror = ", ".join(f"{d} {p}%" for d, p in endpoint.mirror.items()) or "none"
        st.markdown(
            f"**State** {endpoint.state} · **Auth** {endpoint.auth_mode} · "
            f"**Live** {live} · **Mirror** {mirror}"
        )
        st.code(endpoint.scoring_uri, language=None)
        rows = [
            {
                "deployment": d.name,
                "state": d.state,
                "model": d.model,
                "instance type": d.instance_type,
                "instances": d.instance_count,
                "live %": d.live,
                "mirror %": d.mirror,
            }
            for d in endpoint.deployments
        ]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        else:
            st.caption("No deployments.")
