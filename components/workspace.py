"""The workspace picker in the sidebar, the cached connection, and read-only mode.

The local emulator is the default (started when it is not running). Azure ML comes
from a `config.json` (found as `MLClient.from_config` finds it), from
`.streamlit/secrets.toml` (`[azure]`), or typed in; credentials come from
DefaultAzureCredential.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from components.loading import page_opened, reads, start_reading
from rollout.errors import RolloutError
from rollout.workspace import (
    AzureSettings,
    Workspace,
    connect_azure,
    connect_emulator,
    find_config,
)

_CHOICE = "workspace_choice"
_AZURE = "azure_settings"


@st.cache_resource(show_spinner="Connecting to the local emulator…")
def _emulator_workspace(state_dir: str) -> Workspace:
    return connect_emulator(Path(state_dir))


@st.cache_resource(show_spinner="Connecting to Azure ML…")
def _azure_workspace(
    subscription_id: str, resource_group: str, workspace_name: str, log_analytics: str
) -> Workspace:
    return connect_azure(
        subscription_id, resource_group, workspace_name, log_analytics_workspace_id=log_analytics
    )


def _secret(section: str, name: str) -> Any:
    try:
        return st.secrets[section][name]
    except (KeyError, FileNotFoundError, AttributeError):
        return None
    except Exception:  # noqa: BLE001 - a malformed secrets file must not break the page
        return None


def is_read_only() -> bool:
    """Read-only mode: BLUEGREEN_READ_ONLY=1 or `[dashboard] read_only = true` in secrets."""
    if os.environ.get("BLUEGREEN_READ_ONLY", "").lower() in ("1", "true", "yes"):
        return True
    return bool(_secret("dashboard", "read_only"))


def read_only_reason() -> str | None:
    """Why changes are disabled, or None when they are allowed."""
    if is_read_only():
        return "Read-only mode is on (BLUEGREEN_READ_ONLY or [dashboard] read_only): no changes."
    return None


def _azure_defaults() -> AzureSettings | None:
    sub = _secret("azure", "subscription_id")
    rg = _secret("azure", "resource_group")
    ws = _secret("azure", "workspace_name")
    logs = str(
        _secret("azure", "log_analytics_workspace_id")
        or os.environ.get("BLUEGREEN_LOG_ANALYTICS_WORKSPACE_ID", "")
    )
    if sub and rg and ws:
        return AzureSettings(str(sub), str(rg), str(ws), ".streamlit/secrets.toml", logs)
    found = find_config()
    return None if found is None else dataclasses.replace(found, log_analytics_workspace_id=logs)


NOT_CONNECTED = (
    "Not connected: Azure ML is chosen, but no workspace is connected yet. Enter its "
    "subscription, resource group and workspace in the sidebar and press Connect, or choose "
    "Local emulator."
)


def current_workspace() -> Workspace | None:
    """The connected workspace, or None after showing why there is none (Azure ML chosen but
    not connected yet; a connection that failed)."""
    try:
        if st.session_state.get(_CHOICE) == "azure":
            # Never the emulator in its place: its data would be shown as Azure's.
            s: AzureSettings | None = st.session_state.get(_AZURE)
            if s is None:
                st.info(NOT_CONNECTED, icon=":material/cloud_off:")
                return None
            ws = _azure_workspace(
                s.subscription_id, s.resource_group, s.workspace_name, s.log_analytics_workspace_id
            )
        else:
            state_dir = os.environ.get("EMULATOR_STATE_DIR", ".emulator")
            ws = _emulator_workspace(str(Path(state_dir).resolve()))
    except RolloutError as exc:
        st.error(f"Could not connect to the workspace: {exc}")
        return None
    return ws


def workspace_sidebar() -> None:
    with st.sidebar:
        st.subheader("Workspace")
        choice = st.radio(
            "Connect to",
            ["emulator", "azure"],
            format_func=lambda c: "Local emulator" if c == "emulator" else "Azure ML",
            key=_CHOICE,
            horizontal=True,
        )
        if choice == "azure":
            _azure_form()
        ws = current_workspace()
        if ws is not None:
            # The page's own first read (kept for it): connected means it answered.
            start_reading(ws)
            try:
                reads(ws).endpoints(wait=page_opened())
            except RolloutError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                st.success(ws.label, icon=":material/check_circle:")
            st.caption(
                f"Subscription `{ws.subscription_id}`  \nResource group `{ws.resource_group}`"
            )
        if is_read_only():
            st.warning("Read-only mode: changes are disabled.", icon=":material/lock:")


def _azure_form() -> None:
    defaults = st.session_state.get(_AZURE) or _azure_defaults()
    with st.form("azure_workspace"):
        if defaults is not None:
            st.caption(f"From {defaults.source}")
        sub = st.text_input("Subscription ID", value=defaults.subscription_id if defaults else "")
        rg = st.text_input("Resource group", value=defaults.resource_group if defaults else "")
        name = st.text_input("Workspace", value=defaults.workspace_name if defaults else "")
        logs = st.text_input(
            "Log Analytics workspace ID (optional)",
            value=defaults.log_analytics_workspace_id if defaults else "",
            help="Where the endpoints' diagnostic settings send their logs "
            "(AmlOnlineEndpointEventLog, AmlOnlineEndpointTrafficLog): the Deployments page "
            "shows instance events and recent requests from it.",
        )
        if st.form_submit_button("Connect", type="primary"):
            problem = _settings_problem(sub, rg, name, logs)
            if problem is None:
                st.session_state[_AZURE] = AzureSettings(
                    sub.strip(), rg.strip(), name.strip(), "typed in", logs.strip()
                )
            else:
                st.error(problem)


def _settings_problem(sub: str, rg: str, name: str, logs: str) -> str | None:
    if not (sub.strip() and rg.strip() and name.strip()):
        return "Subscription ID, resource group and workspace are all required."
    if logs.strip():
        try:
            uuid.UUID(logs.strip())
        except ValueError:
            return (
                f"The Log Analytics workspace ID '{logs.strip()}' is not a GUID; it is the "
                "workspace's 'Workspace ID' on its Overview page in the Azure portal."
            )
    return None
