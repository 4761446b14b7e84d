"""Deploy: start a rollout from the dashboard. Create an endpoint, add a deployment to the
selected one (from a YAML, or like an existing one, at 0% live traffic), delete an endpoint."""

from __future__ import annotations

import streamlit as st

from components import deployment_forms, endpoint_forms
from components.change_flow import show_flash
from components.selection import all_endpoints
from components.workspace import read_only_reason

st.title("Deploy")
ws, endpoints, selected = all_endpoints()
show_flash()
read_only = read_only_reason()
if read_only:
    st.info(read_only, icon=":material/lock:")

target = f" to {selected.name}" if selected else ""
add, create, delete = st.tabs([f"New deployment{target}", "New endpoint", "Delete endpoint"])
with add:
    if selected is None:
        st.info("Create an endpoint first (New endpoint).")
    else:
        deployment_forms.add_deployment_form(ws, selected, read_only)
with create:
    endpoint_forms.create_endpoint_form([e.name for e in endpoints], read_only)
with delete:
    if selected is None:
        st.caption("There is no endpoint to delete.")
    else:
        endpoint_forms.delete_endpoint_control(selected, read_only)

deployment_forms.open_pending_dialog(ws, selected, read_only)
endpoint_forms.open_pending_dialog(ws, endpoints, read_only)
