"""The three Log Analytics tables of online endpoints, over the emulator's own records.

Columns are Microsoft's (learn.microsoft.com/azure/azure-monitor/reference/tables/
amlonlineendpointtrafficlog, ...eventlog, ...consolelog), limited to those the emulator
has real values for:

- AmlOnlineEndpointTrafficLog: one row per scoring request the client sent (mirrored
  copies are not the client's requests and are left out), from the request log, which
  keeps single requests for its raw window (6 hours by default).
- AmlOnlineEndpointEventLog: the instances' life-cycle events (emulator.lifecycle).
- AmlOnlineEndpointConsoleLog: the last lines each deployment's instances printed since
  the emulator started (emulator.lifecycle.ConsoleLines).
"""

from __future__ import annotations

import datetime as dt
import http
from collections.abc import Callable
from typing import Any

from emulator.logs_kql import Column, KqlError, Row
from emulator.service import Emulator
from emulator.workspace import LOCATION, WORKSPACE

TRAFFIC = "AmlOnlineEndpointTrafficLog"
EVENTS = "AmlOnlineEndpointEventLog"
CONSOLE = "AmlOnlineEndpointConsoleLog"
# The most requests one query reads (the newest of its timespan); Log Analytics itself
# returns at most 500,000 rows.
MAX_TRAFFIC_ROWS = 100_000
CONTAINER = "inference-server"

_COMMON: list[Column] = [("TenantId", "string"), ("TimeGenerated", "datetime")]
COLUMNS: dict[str, list[Column]] = {
    TRAFFIC: [
        *_COMMON,
        ("Location", "string"),
        ("AzureMLWorkspaceName", "string"),
        ("AzureMLWorkspaceId", "string"),
        ("EndpointName", "string"),
        ("DeploymentName", "string"),
        ("Method", "string"),
        ("Path", "string"),
        ("ResponseCode", "int"),
        ("ResponseCodeReason", "string"),
        ("ModelStatusCode", "int"),
        ("ModelStatusReason", "string"),
        ("RequestPayloadSize", "int"),
        ("ResponsePayloadSize", "int"),
        ("TotalDurationMs", "int"),
        ("_ResourceId", "string"),
        ("Type", "string"),
    ],
    EVENTS: [
        *_COMMON,
        ("DeploymentName", "string"),
        ("InstanceId", "string"),
        ("Name", "string"),
        ("Message", "string"),
        ("_ResourceId", "string"),
        ("Type", "string"),
    ],
    CONSOLE: [
        *_COMMON,
        ("DeploymentName", "string"),
        ("InstanceId", "string"),
        ("ContainerName", "string"),
        ("Message", "string"),
        ("_ResourceId", "string"),
        ("Type", "string"),
    ],
}


def columns_of(table: str) -> list[Column]:
    for name, columns in COLUMNS.items():
        if name.lower() == table.lower():
            return columns
    raise KqlError(
        f"'{table}' is not a table of this workspace; the emulator's Logs API has "
        + ", ".join(COLUMNS)
    )


def canonical(table: str) -> str:
    return next(name for name in COLUMNS if name.lower() == table.lower())


def rows(emulator: Emulator, table: str, start: float, end: float) -> list[Row]:
    """The rows of `table` from `start` to `end` (epoch seconds)."""
    makers: dict[str, Callable[[Emulator, float, float], list[Row]]] = {
        TRAFFIC: _traffic,
        EVENTS: _events,
        CONSOLE: _console,
    }
    return makers[canonical(table)](emulator, start, end)


def _resource_id(emulator: Emulator, endpoint: str) -> str:
    return f"{emulator.workspace.path}/onlineEndpoints/{endpoint}".upper()


def _time(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _reason(status: int | None) -> str | None:
    if status is None:
        return None
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return None


def _traffic(emulator: Emulator, start: float, end: float) -> list[Row]:
    tenant = emulator.log_analytics_workspace_id
    with emulator.requests.reader().snapshot() as snapshot:
        found = snapshot.requests_between(start, end, MAX_TRAFFIC_ROWS)
    out: list[Row] = []
    for ts, endpoint, deployment, _, status, model_status, latency, size_in, size_out in found:
        row: dict[str, Any] = {
            "TenantId": tenant,
            "TimeGenerated": _time(ts),
            "Location": LOCATION,
            "AzureMLWorkspaceName": WORKSPACE,
            "AzureMLWorkspaceId": emulator.workspace.workspace_id,
            "EndpointName": endpoint,
            "DeploymentName": deployment or None,
            "Method": "POST",
            "Path": "/score",
            "ResponseCode": status,
            "ResponseCodeReason": _reason(status),
            "ModelStatusCode": model_status,
            "ModelStatusReason": _reason(model_status),
            "RequestPayloadSize": size_in,
            "ResponsePayloadSize": size_out,
            "TotalDurationMs": round(latency),
            "_ResourceId": _resource_id(emulator, endpoint),
            "Type": TRAFFIC,
        }
        out.append(row)
    return out


def _events(emulator: Emulator, start: float, end: float) -> list[Row]:
    tenant = emulator.log_analytics_workspace_id
    return [
        {
            "TenantId": tenant,
            "TimeGenerated": _time(e.ts),
            "DeploymentName": e.deployment,
            "InstanceId": e.instance,
            "Name": e.name,
            "Message": e.message,
            "_ResourceId": _resource_id(emulator, e.endpoint),
            "Type": EVENTS,
        }
        for e in emulator.events.between(start, end)
    ]


def _console(emulator: Emulator, start: float, end: float) -> list[Row]:
    tenant = emulator.log_analytics_workspace_id
    return [
        {
            "TenantId": tenant,
            "TimeGenerated": _time(line.ts),
            "DeploymentName": line.deployment,
            "InstanceId": line.instance,
            "ContainerName": CONTAINER,
            "Message": line.message,
            "_ResourceId": _resource_id(emulator, line.endpoint),
            "Type": CONSOLE,
        }
        for line in emulator.console.between(start, end)
    ]
