"""Azure Monitor metrics of an online endpoint and its deployments, as tidy pandas frames.

One `MetricsClient` (azure-monitor-querymetrics) per workspace: on Azure it talks to the
regional endpoint `https://{location}.metrics.monitor.azure.com`, on the emulator to its
`metrics_url`. Every query is one `metrics:getBatch` call with a timeout; azure-core errors
become rollout errors here, with what to do about them.

Frames are long: one row per time bucket and series, with the columns `time` (UTC),
`deployment`, `metric`, `value` and what the query splits by (`traffic_type`,
`status_class`, `instance`, `state`). Request frames also carry `count`, the requests in
the bucket; their `value` is requests per minute, whatever the granularity.

Mirrored requests: Azure Monitor counts a mirrored copy under the mirror target's
`deployment` and has no dimension that tells it from a request sent there directly. The
emulator adds one, `trafficType` (`live` or `mirror`). The request and latency queries ask
for it and, when the service refuses the unknown dimension (as Azure does), ask again
without it; the answer says which happened (`mirror_dimension`), and such series get the
traffic type `all`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.monitor.querymetrics import MetricsClient, MetricsQueryResult

from rollout.errors import NotFound, RolloutError, ServiceError
from rollout.workspace import Workspace

T = TypeVar("T")

ENDPOINT_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
DEPLOYMENT_NAMESPACE = f"{ENDPOINT_NAMESPACE}/deployments"

REQUESTS = "RequestsPerMinute"
LATENCY = {"P50": "RequestLatency_P50", "P95": "RequestLatency_P95", "P99": "RequestLatency_P99"}
CPU = "CpuUtilizationPercentage"
MEMORY = "CpuMemoryUtilizationPercentage"
CAPACITY = "DeploymentCapacity"
MIRROR_DROPPED = "MirrorDroppedPerMinute"  # the emulator's own metric; Azure has none

TRAFFIC_TYPE = "trafficType"  # the emulator's own dimension; Azure has none
LIVE, MIRROR, ALL = "live", "mirror", "all"

DEFAULT_TIMEOUT = 20.0
MAX_SERIES = 200  # `top`: the service returns 10 series per resource unless told otherwise
GRANULARITIES = tuple(
    timedelta(seconds=s) for s in (10, 60, 300, 900, 1800, 3600, 6 * 3600, 12 * 3600, 86400)
)
FINEST_ON_AZURE = timedelta(minutes=1)
MAX_POINTS = 1440  # per series: more would only slow the charts down
MIN_POINTS = 3
DEFAULT_POINTS = 360  # the default granularity: the finest with at most this many buckets

REQUEST_COLUMNS = ["time", "deployment", "traffic_type", "metric", "count", "value"]
LATENCY_COLUMNS = ["time", "deployment", "traffic_type", "metric", "value"]
STATUS_COLUMNS = [
    *("time", "deployment", "traffic_type", "status_class", "status_code"),
    *("metric", "count", "value"),
]
INSTANCE_COLUMNS = ["time", "deployment", "instance", "metric", "value"]
CAPACITY_COLUMNS = ["time", "deployment", "state", "metric", "value"]
DROPPED_COLUMNS = ["time", "deployment", "metric", "count", "value"]

_DEPLOYMENT_IN_ID = re.compile(r"/deployments/([^/]+)/providers/", re.IGNORECASE)


# --- time ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The time range a query covers and its bucket size (the granularity)."""

    start: datetime
    end: datetime
    granularity: timedelta

    @classmethod
    def last(
        cls, span: timedelta, granularity: timedelta, *, now: datetime | None = None
    ) -> Window:
        end = now or datetime.now(UTC)
        return cls(end - span, end, granularity)

    @property
    def interval(self) -> str:
        """The granularity as ISO 8601, as Azure Monitor names it (PT1M, P1D)."""
        return iso_duration(self.granularity)


def iso_duration(value: timedelta) -> str:
    """PT10S, PT1M, PT1H30M, P1D: a duration as ISO 8601, whole seconds."""
    seconds = int(value.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    text = (f"P{days}D" if days else "P") + (f"T{time}" if time else "")
    return text if text != "P" else "PT0S"


def granularity_choices(span: timedelta, *, sub_minute: bool) -> list[timedelta]:
    """The granularities worth offering for `span`: at least 3 and at most 1440 buckets.

    Azure Monitor's finest grain for endpoints is one minute; `sub_minute` adds the
    emulator's ten seconds.
    """
    return [
        g
        for g in GRANULARITIES
        if (sub_minute or g >= FINEST_ON_AZURE) and MIN_POINTS <= span / g <= MAX_POINTS
    ]


def default_granularity(span: timedelta, choices: Sequence[timedelta]) -> timedelta:
    """The finest of `choices` that splits `span` into at most 360 buckets (else the coarsest):
    fine enough to see a change, coarse enough to read."""
    if not choices:
        raise ValueError(f"no granularity suits a span of {span}")
    return next((g for g in choices if span / g <= DEFAULT_POINTS), choices[-1])


def bucket_minutes(times: Any, window: Window) -> Any:
    """Minutes each bucket starting at `times` covers within the window.

    Every bucket is a whole granularity but the last, which ends now: dividing its count
    by the whole granularity would show a rate that drops at the right edge.
    """
    grain = window.granularity.total_seconds()
    end = pd.Timestamp(window.end)
    covered = (end - pd.to_datetime(times, utc=True)).dt.total_seconds().clip(upper=grain)
    return covered.clip(lower=min(grain, 1.0)) / 60.0


# --- the client ---------------------------------------------------------------------------


def metrics_client(ws: Workspace, *, timeout: float = DEFAULT_TIMEOUT) -> MetricsClient:
    """A MetricsClient for the workspace's region (Azure) or the emulator's metrics URL."""
    return MetricsClient(
        metrics_endpoint(ws, timeout=timeout),
        ws.credential,
        connection_verify=ws.verify,
        connection_timeout=min(timeout, 10.0),
        read_timeout=timeout,
        retry_total=2,
        per_retry_policies=[ws.metrics_calls],
    )


def metrics_endpoint(ws: Workspace, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    if ws.metrics_url:
        return ws.metrics_url.rstrip("/")
    location = ws.location or workspace_location(ws, timeout=timeout)
    return f"https://{location}.metrics.monitor.azure.com"


def workspace_location(ws: Workspace, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The workspace's Azure region ('eastus'), read from the workspace itself."""
    # MLClient's workspaces.get takes no timeout: bound the wait here.
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(ws.ml_client.workspaces.get, ws.workspace_name)
    what = f"reading the region of workspace '{ws.workspace_name}'"
    try:
        with metric_errors(what, timeout=timeout):
            entity = future.result(timeout=timeout)
    except FutureTimeout:
        raise ServiceError(
            f"{what} took longer than {timeout:.0f} s; check the connection and try again"
        ) from None
    finally:
        pool.shutdown(wait=False)
    location = str(getattr(entity, "location", "") or "").replace(" ", "").lower()
    if not location:
        raise ServiceError(f"{what}: the workspace has no location, so its metrics cannot be read")
    return location


def endpoint_resource_id(ws: Workspace, endpoint: str) -> str:
    return (
        f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{ws.workspace_name}"
        f"/onlineEndpoints/{endpoint}"
    )


def deployment_resource_id(ws: Workspace, endpoint: str, deployment: str) -> str:
    return f"{endpoint_resource_id(ws, endpoint)}/deployments/{deployment}"


@contextmanager
def metric_errors(what: str, *, timeout: float | None = None) -> Iterator[None]:
    """Translate azure-core errors from a metrics call into rollout errors."""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise ServiceError(
            f"{what}: not authorized ({_first_line(exc)}). Sign in again (`az login`) and reload."
        ) from exc
    except ResourceNotFoundError as exc:
        raise NotFound(
            f"{what}: not found ({_first_line(exc)}). The endpoint may have been deleted, or the "
            "metrics service does not serve this resource."
        ) from exc
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise ServiceError(
                f"{what}: your identity may not read these metrics. Ask for the Monitoring "
                "Reader role (or Reader) on the endpoint or its workspace."
            ) from exc
        if exc.status_code == 429:
            raise ServiceError(
                f"{what}: the metrics service is throttling queries. Refresh less often or "
                "pause the live refresh for a minute."
            ) from exc
        raise ServiceError(f"{what}: the metrics service refused ({_first_line(exc)})") from exc
    except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
        limit = f" {timeout:.0f} s" if timeout else ""
        raise ServiceError(
            f"{what}: no answer within the{limit} timeout. Try a shorter time range or a "
            "coarser granularity, or try again."
        ) from exc
    except ServiceRequestError as exc:
        raise ServiceError(
            f"{what}: the metrics service could not be reached ({_first_line(exc)})"
        ) from exc
    except AzureError as exc:
        raise ServiceError(f"{what}: {_first_line(exc)}") from exc


def _first_line(exc: AzureError) -> str:
    text = str(exc.message or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


# --- parsing the SDK's results ------------------------------------------------------------


def _dimension(values: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in values.items() if k.lower() == wanted), None)


def _deployment_of(metric_id: str | None) -> str | None:
    match = _DEPLOYMENT_IN_ID.search(metric_id or "")
    return match.group(1) if match else None


def results_frame(
    results: Sequence[MetricsQueryResult],
    *,
    aggregation: str | Mapping[str, str],
    dimensions: Mapping[str, str],
    missing_as_zero: bool = False,
) -> Any:
    """One row per data point: `time`, `metric`, `deployment`, one column per dimension
    (`dimensions` maps a dimension name to its column) and `value`.

    `aggregation` ('total', 'average', ...) is the value taken, per metric name when a
    mapping. `deployment` comes from the `deployment` dimension at endpoint scope and from
    the metric's resource id at deployment scope. A point without that aggregation is
    dropped, or counted as 0 with `missing_as_zero` (counts: no sample means no request).
    """
    rows: list[dict[str, Any]] = []
    for result in results:
        for metric in result.metrics:
            name = str(metric.name)
            agg = aggregation if isinstance(aggregation, str) else aggregation.get(name, "average")
            resource_deployment = _deployment_of(getattr(metric, "id", None))
            for series in metric.timeseries or []:
                meta = series.metadata_values or {}
                deployment = _dimension(meta, "deployment") or resource_deployment
                dims = {column: _dimension(meta, dim) for dim, column in dimensions.items()}
                for point in series.data or []:
                    value = getattr(point, agg.lower(), None)
                    if value is None:
                        if not missing_as_zero:
                            continue
                        value = 0.0
                    rows.append(
                        {
                            "time": point.timestamp,
                            "metric": name,
                            "deployment": deployment,
                            **dims,
                            "value": float(value),
                        }
                    )
    columns = ["time", "metric", "deployment", *dimensions.values(), "value"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["value"] = frame["value"].astype(float)
    return frame


def _has_dimension(results: Sequence[MetricsQueryResult], name: str) -> bool | None:
    """Whether the series carry dimension `name`; None when there are no series at all."""
    seen = False
    for result in results:
        for metric in result.metrics:
            for series in metric.timeseries or []:
                seen = True
                if _dimension(series.metadata_values or {}, name) is not None:
                    return True
    return False if seen else None


def _traffic_types(frame: Any, mirror_dimension: bool) -> Any:
    if not mirror_dimension:
        return pd.Series(ALL, index=frame.index, dtype=object)
    kind = frame["traffic_type"].fillna(LIVE).astype(str).str.lower()
    return kind.where(kind.isin([LIVE, MIRROR]), LIVE)


def request_rates(frame: Any, window: Window) -> Any:
    """`count` (requests in the bucket) and `value` (requests per minute) from totals."""
    out = frame.copy()
    out["count"] = out["value"]
    if len(out):
        out["value"] = out["count"] / bucket_minutes(out["time"], window)
    return out


# --- queries ------------------------------------------------------------------------------


def _filter(*dimensions: str) -> str:
    return " and ".join(f"{d} eq '*'" for d in dimensions)


def _query(
    client: MetricsClient,
    *,
    resource_ids: Sequence[str],
    namespace: str,
    metric_names: Sequence[str],
    window: Window,
    aggregations: Sequence[str],
    dimensions: Sequence[str],
    timeout: float,
) -> list[MetricsQueryResult]:
    return client.query_resources(
        resource_ids=list(resource_ids),
        metric_namespace=namespace,
        metric_names=list(metric_names),
        timespan=(window.start, window.end),
        granularity=window.granularity,
        aggregations=list(aggregations),
        filter=_filter(*dimensions) if dimensions else None,
        max_results=MAX_SERIES,
        # timeout bounds the whole call, retries included; the others each socket wait
        timeout=timeout,
        connection_timeout=min(timeout, 10.0),
        read_timeout=timeout,
    )


def _query_split_by_traffic_type(
    query: Callable[[Sequence[str]], list[MetricsQueryResult]],
    dimensions: Sequence[str],
    *,
    mirror_dimension: bool,
) -> tuple[list[MetricsQueryResult], bool]:
    """Query split by `dimensions` plus trafficType; without it when the service refuses it.

    Azure answers 400 for a dimension a metric does not have. When the query without
    trafficType fails too, that error is the one raised: it was not about the dimension.
    """
    if mirror_dimension:
        try:
            results = query([*dimensions, TRAFFIC_TYPE])
        except HttpResponseError as exc:
            if exc.status_code != 400:
                raise
        else:
            return results, _has_dimension(results, TRAFFIC_TYPE) is not False
    return query(list(dimensions)), False


@dataclass(frozen=True)
class TrafficMetrics:
    """Requests per minute and latency percentiles per deployment (and traffic type)."""

    requests: Any  # REQUEST_COLUMNS
    latency: Any  # LATENCY_COLUMNS; metric is P50, P95 or P99
    mirror_dimension: bool


def traffic_metrics(
    client: MetricsClient,
    resource_id: str,
    window: Window,
    *,
    mirror_dimension: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> TrafficMetrics:
    """RequestsPerMinute (total per bucket) and RequestLatency_P50/_P95/_P99 (average), split
    by deployment and, where the service has it, by trafficType: one call (two on Azure)."""
    names = [REQUESTS, *LATENCY.values()]

    def query(dimensions: Sequence[str]) -> list[MetricsQueryResult]:
        return _query(
            client,
            resource_ids=[resource_id],
            namespace=ENDPOINT_NAMESPACE,
            metric_names=names,
            window=window,
            aggregations=["Total", "Average"],
            dimensions=dimensions,
            timeout=timeout,
        )

    with metric_errors("reading request and latency metrics", timeout=timeout):
        results, has_mirror = _query_split_by_traffic_type(
            query, ["deployment"], mirror_dimension=mirror_dimension
        )
    requests = _counts(results, has_mirror, REQUESTS, {TRAFFIC_TYPE: "traffic_type"})
    latency = results_frame(
        results, aggregation="average", dimensions={TRAFFIC_TYPE: "traffic_type"}
    )
    latency = latency[latency["metric"].isin(list(LATENCY.values()))].copy()
    latency["traffic_type"] = _traffic_types(latency, has_mirror)
    latency["metric"] = latency["metric"].map({v: k for k, v in LATENCY.items()})
    return TrafficMetrics(
        requests=request_rates(requests, window)[REQUEST_COLUMNS].reset_index(drop=True),
        latency=latency[LATENCY_COLUMNS].reset_index(drop=True),
        mirror_dimension=has_mirror,
    )


def _counts(
    results: Sequence[MetricsQueryResult],
    mirror_dimension: bool,
    metric: str,
    dimensions: Mapping[str, str],
) -> Any:
    """The totals of a count metric, a bucket without a sample counted as 0 requests."""
    frame = results_frame(results, aggregation="total", dimensions=dimensions, missing_as_zero=True)
    frame = frame[frame["metric"] == metric].copy()
    frame["traffic_type"] = _traffic_types(frame, mirror_dimension)
    return frame


def requests_by_status(
    client: MetricsClient,
    resource_id: str,
    window: Window,
    *,
    mirror_dimension: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """RequestsPerMinute split by deployment, statusCodeClass (2xx, 4xx, 5xx) and statusCode
    (so that model errors, 424, are counted apart from the other 4xx), and by trafficType
    where the service has it (STATUS_COLUMNS)."""

    def query(dimensions: Sequence[str]) -> list[MetricsQueryResult]:
        return _query(
            client,
            resource_ids=[resource_id],
            namespace=ENDPOINT_NAMESPACE,
            metric_names=[REQUESTS],
            window=window,
            aggregations=["Total"],
            dimensions=dimensions,
            timeout=timeout,
        )

    with metric_errors("reading requests by status class", timeout=timeout):
        results, has_mirror = _query_split_by_traffic_type(
            query,
            ["deployment", "statusCodeClass", "statusCode"],
            mirror_dimension=mirror_dimension,
        )
    frame = _counts(
        results,
        has_mirror,
        REQUESTS,
        {
            "statusCodeClass": "status_class",
            "statusCode": "status_code",
            TRAFFIC_TYPE: "traffic_type",
        },
    )
    for column in ("status_class", "status_code"):
        frame[column] = frame[column].fillna("unknown").astype(str)
    return request_rates(frame, window)[STATUS_COLUMNS].reset_index(drop=True)


def mirror_dropped(
    client: MetricsClient,
    resource_id: str,
    window: Window,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any | None:
    """Mirror copies dropped because the mirror target was saturated, per deployment
    (DROPPED_COLUMNS); None where the service has no such metric (Azure: a mirror copy
    that cannot be served is not reported)."""
    with metric_errors("reading dropped mirror copies", timeout=timeout):
        try:
            results = _query(
                client,
                resource_ids=[resource_id],
                namespace=ENDPOINT_NAMESPACE,
                metric_names=[MIRROR_DROPPED],
                window=window,
                aggregations=["Total"],
                dimensions=["deployment"],
                timeout=timeout,
            )
        except HttpResponseError as exc:
            if exc.status_code == 400:
                return None
            raise
    frame = results_frame(results, aggregation="total", dimensions={}, missing_as_zero=True)
    return request_rates(frame, window)[DROPPED_COLUMNS].reset_index(drop=True)


def instance_metrics(
    client: MetricsClient,
    resource_ids: Mapping[str, str],
    window: Window,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """CPU and memory utilization (%) per instance of each deployment (INSTANCE_COLUMNS).

    `resource_ids` maps deployment names to their resource ids; one call for all (the
    batch API takes up to 50 resources).
    """
    return _deployment_scope(
        client,
        resource_ids,
        window,
        [CPU, MEMORY],
        ("instanceId", "instance"),
        INSTANCE_COLUMNS,
        what="reading instance CPU and memory",
        timeout=timeout,
    )


def deployment_capacity(
    client: MetricsClient,
    resource_ids: Mapping[str, str],
    window: Window,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """DeploymentCapacity (instances, average per bucket) per deployment and State."""
    return _deployment_scope(
        client,
        resource_ids,
        window,
        [CAPACITY],
        ("State", "state"),
        CAPACITY_COLUMNS,
        what="reading deployment capacity",
        timeout=timeout,
    )


def _deployment_scope(
    client: MetricsClient,
    resource_ids: Mapping[str, str],
    window: Window,
    metric_names: list[str],
    dimension: tuple[str, str],
    columns: Sequence[str],
    *,
    what: str,
    timeout: float,
) -> Any:
    """Deployment-scope metrics (averages) split by one dimension, in `columns`."""
    if not resource_ids:
        return pd.DataFrame(columns=list(columns))
    name, column = dimension
    with metric_errors(what, timeout=timeout):
        results = _query(
            client,
            resource_ids=list(resource_ids.values()),
            namespace=DEPLOYMENT_NAMESPACE,
            metric_names=metric_names,
            window=window,
            aggregations=["Average"],
            dimensions=[name],
            timeout=timeout,
        )
    frame = results_frame(results, aggregation="average", dimensions={name: column})
    frame["deployment"] = _known_names(frame["deployment"], resource_ids)
    frame[column] = frame[column].fillna("(all)").astype(str)
    return frame[list(columns)].reset_index(drop=True)


def _known_names(deployments: Any, resource_ids: Mapping[str, str]) -> Any:
    """Deployment names as the caller spells them (resource ids may be lower-cased)."""
    spelling = {name.lower(): name for name in resource_ids}
    only = next(iter(resource_ids)) if len(resource_ids) == 1 else None
    return deployments.map(
        lambda d: spelling.get(str(d).lower(), d) if isinstance(d, str) else only
    )


# --- everything the Metrics page shows, in one go ------------------------------------------


@dataclass(frozen=True)
class EndpointMetrics:
    """One endpoint's metrics over a window; a part that failed has its error in `problems`
    (keyed 'traffic', 'status', 'instances', 'capacity') and an empty frame."""

    window: Window
    requests: Any
    latency: Any
    status: Any
    instances: Any
    capacity: Any
    mirror_dimension: bool
    dropped: Any = None  # DROPPED_COLUMNS, or None where the service does not count drops
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return int(self.requests["count"].sum()) if len(self.requests) else 0


def endpoint_metrics(
    ws: Workspace,
    client: MetricsClient,
    endpoint: str,
    deployments: Sequence[str],
    window: Window,
    *,
    mirror_dimension: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> EndpointMetrics:
    """Requests, latency, status classes, instance use and capacity of an endpoint's
    deployments, queried concurrently; each part fails on its own.

    Dropped mirror copies are asked for only while the service is known to tell mirrored
    requests apart (`mirror_dimension`): a service without that has no such metric either.
    """
    endpoint_id = endpoint_resource_id(ws, endpoint)
    deployment_ids = {d: deployment_resource_id(ws, endpoint, d) for d in deployments}
    with ThreadPoolExecutor(max_workers=5) as pool:
        traffic = pool.submit(
            traffic_metrics,
            client,
            endpoint_id,
            window,
            mirror_dimension=mirror_dimension,
            timeout=timeout,
        )
        status = pool.submit(
            requests_by_status,
            client,
            endpoint_id,
            window,
            mirror_dimension=mirror_dimension,
            timeout=timeout,
        )
        instances = pool.submit(instance_metrics, client, deployment_ids, window, timeout=timeout)
        capacity = pool.submit(deployment_capacity, client, deployment_ids, window, timeout=timeout)
        dropped = (
            pool.submit(mirror_dropped, client, endpoint_id, window, timeout=timeout)
            if mirror_dimension
            else None
        )
    problems: dict[str, str] = {}

    def outcome(key: str, future: Any, empty: Callable[[], T]) -> T:
        try:
            return future.result()  # type: ignore[no-any-return]
        except RolloutError as exc:
            problems[key] = str(exc)
            return empty()

    empty_traffic = TrafficMetrics(
        pd.DataFrame(columns=REQUEST_COLUMNS),
        pd.DataFrame(columns=LATENCY_COLUMNS),
        mirror_dimension,
    )
    traffic_result = outcome("traffic", traffic, lambda: empty_traffic)
    return EndpointMetrics(
        window=window,
        requests=traffic_result.requests,
        latency=traffic_result.latency,
        status=outcome("status", status, lambda: pd.DataFrame(columns=STATUS_COLUMNS)),
        instances=outcome("instances", instances, lambda: pd.DataFrame(columns=INSTANCE_COLUMNS)),
        capacity=outcome("capacity", capacity, lambda: pd.DataFrame(columns=CAPACITY_COLUMNS)),
        mirror_dimension=traffic_result.mirror_dimension,
        dropped=outcome("dropped", dropped, lambda: None) if dropped is not None else None,
        problems=problems,
    )
