"""Deployments: each deployment of an endpoint, with its scale, delete and logs."""

from __future__ import annotations

import streamlit as st

from components import loading
from components.change_flow import show_flash
from components.deployment_actions import (
    delete_control,
    open_pending_dialog,
    scale_control,
)
from components.endpoint_views import deployments_table
from components.events_view import events_panel
from components.log_view import logs_panel
from components.selection import endpoint_in_focus
from components.workspace import read_only_reason

st.title("Deployments")
ws, endpoint = endpoint_in_focus()
show_flash()
if not endpoint.deployments:
    st.info(f"Endpoint '{endpoint.name}' has no deployments yet.")
    st.stop()
ready = loading.ready_instances(ws, [endpoint]).get(endpoint.name)
deployments_table(endpoint, ready, ready_read=ready is not None)

names = [d.name for d in endpoint.deployments]
name = st.selectbox("Deployment", names, key=f"deployment_{endpoint.name}")
deployment = endpoint.deployments[names.index(name)]
read_only = read_only_reason()
if read_only:
    st.info(read_only, icon=":material/lock:")
scale, delete = st.columns(2)
with scale.container(border=True):
    scale_control(endpoint, deployment, read_only)
with delete.container(border=True):
    delete_control(endpoint, deployment, read_only)

logs_panel(ws, endpoint, deployment)
events_panel(ws, endpoint, deployment)
open_pending_dialog(ws, endpoint)
