"""The metrics the emulator serves, and their dimensions, as Azure Monitor names them.

Endpoint scope (`.../onlineEndpoints/{e}`):
  RequestsPerMinute       dims deployment, statusCode, statusCodeClass, modelStatusCode,
                          trafficType (emulator only: live / mirror)
  RequestLatency, RequestLatency_P50/_P90/_P95/_P99 (ms)   dims deployment, trafficType
  NetworkBytes (bytes/s in + out of live requests), ConnectionsActive,
  NewConnectionsPerSecond, MirrorDroppedPerMinute (emulator only; dim deployment)
Deployment scope (`.../deployments/{d}`):
  CpuUtilizationPercentage, CpuMemoryUtilizationPercentage   dim instanceId
  DeploymentCapacity                                        dims instanceId, State

A metric's `kind` says where its numbers come from (`monitor_series.py`): the request
log's counts (requests, dropped mirror copies, bytes), its latencies, or the sampler's
gauges (`monitor_sampler.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

ENDPOINT_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
DEPLOYMENT_NAMESPACE = ENDPOINT_NAMESPACE + "/deployments"


@dataclass(frozen=True)
class MetricDef:
    name: str
    display: str
    unit: str
    description: str
    dimensions: tuple[str, ...]
    kind: str  # requests | dropped | bytes | latency | gauge
    quantile: float | None = None
    gauge: str = ""
    combine: str = "sum"  # how a gauge's dimension values add up at one sampling time


_LATENCY_DIMS = ("deployment", "trafficType")
ENDPOINT_METRICS = {
    m.name.lower(): m
    for m in (
        MetricDef(
            "RequestsPerMinute",
            "Requests per minute",
            "Count",
            "The number of requests sent to the online endpoint within a minute.",
            ("deployment", "statusCode", "statusCodeClass", "modelStatusCode", "trafficType"),
            "requests",
        ),
        MetricDef(
            "RequestLatency",
            "Request Latency",
            "MilliSeconds",
            "The complete interval of time to respond to a request.",
            _LATENCY_DIMS,
            "latency",
        ),
        *(
            MetricDef(
                f"RequestLatency_P{p}",
                f"Request Latency P{p}",
                "MilliSeconds",
                f"The P{p} request latency of all requests in the selected time period.",
                _LATENCY_DIMS,
                "latency",
                quantile=p / 100,
            )
            for p in (50, 90, 95, 99)
        ),
        MetricDef(
            "NetworkBytes",
            "Network bytes",
            "BytesPerSecond",
            "The bytes per second served for the endpoint (requests and responses).",
            (),
            "bytes",
        ),
        MetricDef(
            "ConnectionsActive",
            "Active connection count",
            "Count",
            "The total number of concurrent TCP connections active from clients.",
            (),
            "gauge",
            gauge="connections",
        ),
        MetricDef(
            "NewConnectionsPerSecond",
            "New connections per second",
            "CountPerSecond",
            "The average number of new TCP connections per second established from clients.",
            (),
            "gauge",
            gauge="new_connections",
        ),
        MetricDef(
            "MirrorDroppedPerMinute",
            "Mirror copies dropped per minute (emulator)",
            "Count",
            "Mirror copies not sent because the mirror deployment was saturated (emulator only).",
            ("deployment",),
            "dropped",
        ),
    )
}
DEPLOYMENT_METRICS = {
    m.name.lower(): m
    for m in (
        MetricDef(
            "CpuUtilizationPercentage",
            "CPU Utilization Percentage",
            "Percent",
            "The CPU use of the instances, in percent of this machine's CPUs.",
            ("instanceId",),
            "gauge",
            gauge="cpu",
            combine="mean",
        ),
        MetricDef(
            "CpuMemoryUtilizationPercentage",
            "CPU Memory Utilization Percentage",
            "Percent",
            "The memory (resident set) of the instances, in percent of this machine's memory.",
            ("instanceId",),
            "gauge",
            gauge="memory",
            combine="mean",
        ),
        MetricDef(
            "DeploymentCapacity",
            "Deployment Capacity",
            "Count",
            "The number of instances in the deployment, by state.",
            ("instanceId", "State"),
            "gauge",
            gauge="capacity",
        ),
    )
}
# metricnamespace (lower-case) -> (its name as Azure spells it, its metrics)
NAMESPACES = {
    ENDPOINT_NAMESPACE.lower(): (ENDPOINT_NAMESPACE, ENDPOINT_METRICS),
    DEPLOYMENT_NAMESPACE.lower(): (DEPLOYMENT_NAMESPACE, DEPLOYMENT_METRICS),
}
