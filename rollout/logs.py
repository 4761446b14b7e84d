"""Endpoints' diagnostic logs in Log Analytics, read with azure-monitor-query's LogsQueryClient.

On Azure an endpoint's diagnostic settings can send its logs to a Log Analytics workspace:
AmlOnlineEndpointEventLog (the inference-server containers' life cycle),
AmlOnlineEndpointTrafficLog (every scoring request) and AmlOnlineEndpointConsoleLog (what
the containers print). The emulator serves the same query API over its own records. A
Workspace without a Log Analytics workspace id has none of this (`logs_enabled`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
from azure.core.exceptions import AzureError, HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryStatus

from rollout.errors import ServiceError
from rollout.workspace import Workspace

DEFAULT_TIMEOUT = 30.0
EVENT_COLUMNS = ["time", "deployment", "instance", "event", "message"]
REQUEST_COLUMNS = ["time", "deployment", "status", "model status", "latency (ms)", "path"]
NOT_ENABLED = (
    "Instance events and recent requests come from Log Analytics. Send the endpoint's logs "
    "there (its diagnostic settings in the Azure portal: AmlOnlineEndpointEventLog and "
    "AmlOnlineEndpointTrafficLog), then give the Log Analytics workspace ID when you connect."
)


def logs_enabled(ws: Workspace) -> bool:
    return bool(ws.log_analytics_workspace_id)


def logs_client(ws: Workspace, *, timeout: float = DEFAULT_TIMEOUT) -> LogsQueryClient:
    """A LogsQueryClient for Azure's Log Analytics, or the emulator's query API."""
    extra: dict[str, Any] = {}
    if ws.logs_url:
        extra["endpoint"] = ws.logs_url.rstrip("/")
    return LogsQueryClient(
        ws.credential,
        connection_verify=ws.verify,
        connection_timeout=min(timeout, 10.0),
        read_timeout=timeout,
        retry_total=2,
        **extra,
    )


def _kql_string(value: str) -> str:
    """A KQL string literal (double-quoted, backslash-escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def events_query(ws: Workspace, endpoint: str, *, top: int) -> str:
    return (
        "AmlOnlineEndpointEventLog"
        f" | where _ResourceId =~ {_kql_string(ws.resource_path(endpoint))}"
        " | project TimeGenerated, DeploymentName, InstanceId, Name, Message"
        f" | order by TimeGenerated desc | take {int(top)}"
    )


def requests_query(endpoint: str, *, top: int) -> str:
    return (
        "AmlOnlineEndpointTrafficLog"
        f" | where EndpointName == {_kql_string(endpoint)}"
        " | project TimeGenerated, DeploymentName, ResponseCode, ModelStatusCode,"
        " TotalDurationMs, Path"
        f" | order by TimeGenerated desc | take {int(top)}"
    )


def _run(ws: Workspace, query: str, span: timedelta, what: str, client: Any) -> pd.DataFrame:
    workspace_id = ws.log_analytics_workspace_id
    if not workspace_id:
        raise ServiceError(f"{what}: no Log Analytics workspace is set for {ws.label}")
    try:
        result = client.query_workspace(workspace_id, query, timespan=span)
    except HttpResponseError as exc:
        first = str(exc.message or exc).strip().splitlines()
        raise ServiceError(
            f"{what} from Log Analytics workspace {workspace_id} failed"
            f" ({exc.status_code}): {first[0] if first else type(exc).__name__}"
        ) from exc
    except AzureError as exc:
        raise ServiceError(
            f"{what}: Log Analytics workspace {workspace_id} could not be reached ({exc})"
        ) from exc
    if result.status == LogsQueryStatus.PARTIAL:
        table = result.partial_data[0] if result.partial_data else None
    else:
        table = result.tables[0] if result.tables else None
    if table is None:
        return pd.DataFrame()
    return pd.DataFrame([list(row) for row in table.rows], columns=table.columns)


def recent_events(
    ws: Workspace,
    endpoint: str,
    *,
    span: timedelta = timedelta(days=1),
    top: int = 200,
    client: Any = None,
) -> pd.DataFrame:
    """The endpoint's newest instance life-cycle events, newest first (EVENT_COLUMNS)."""
    client = client or logs_client(ws)
    frame = _run(ws, events_query(ws, endpoint, top=top), span, "reading instance events", client)
    if frame.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    frame = frame.rename(
        columns={
            "TimeGenerated": "time",
            "DeploymentName": "deployment",
            "InstanceId": "instance",
            "Name": "event",
            "Message": "message",
        }
    )
    return frame[EVENT_COLUMNS]


def recent_requests(
    ws: Workspace,
    endpoint: str,
    *,
    span: timedelta = timedelta(hours=1),
    top: int = 50,
    client: Any = None,
) -> pd.DataFrame:
    """The endpoint's newest scoring requests, newest first (REQUEST_COLUMNS)."""
    client = client or logs_client(ws)
    frame = _run(ws, requests_query(endpoint, top=top), span, "reading recent requests", client)
    if frame.empty:
        return pd.DataFrame(columns=REQUEST_COLUMNS)
    frame = frame.rename(
        columns={
            "TimeGenerated": "time",
            "DeploymentName": "deployment",
            "ResponseCode": "status",
            "ModelStatusCode": "model status",
            "TotalDurationMs": "latency (ms)",
            "Path": "path",
        }
    )
    return frame[REQUEST_COLUMNS]
