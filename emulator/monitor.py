"""Azure Monitor metrics of the emulator's endpoints and deployments.

`POST {metrics_url}/subscriptions/{s}/metrics:getBatch` answers exactly as Azure's
metrics batch API does for azure-monitor-querymetrics' `MetricsClient.query_resources`:
query parameters starttime, endtime, interval, metricnamespace, metricnames,
aggregation, top, orderby, filter, rollupby (and any api-version), body
`{"resourceids": [...]}`, the ARM bearer token, and Azure's response shape. The
numbers come from the request log (`requestlog.py`: raw requests, 10 s / 1 min / 1 h
rollups) and from the gauges this module's `Sampler` records every few seconds.

Endpoint scope (`.../onlineEndpoints/{e}`):
  RequestsPerMinute       dims deployment, statusCode, statusCodeClass, modelStatusCode,
                          trafficType (emulator only: live / mirror)
  RequestLatency, RequestLatency_P50/_P90/_P95/_P99 (ms)   dims deployment, trafficType
  NetworkBytes (bytes/s in + out of live requests), ConnectionsActive,
  NewConnectionsPerSecond, MirrorDroppedPerMinute (emulator only; dim deployment)
Deployment scope (`.../deployments/{d}`):
  CpuUtilizationPercentage, CpuMemoryUtilizationPercentage   dim instanceId
  DeploymentCapacity                                        dims instanceId, State

Semantics per interval (buckets aligned to multiples of the interval since the epoch):
- RequestsPerMinute and MirrorDroppedPerMinute are per-minute samples: total = the
  requests in the interval, count = its minutes, average = total / count, minimum and
  maximum over its minutes (a minute without requests is a 0). At PT10S total is the
  requests in the 10 s and average = minimum = maximum = the per-minute rate (x 6).
  Mirrored requests count under the mirror deployment; dropped mirror copies are not
  requests served and count only in MirrorDroppedPerMinute.
- NetworkBytes is per-minute samples of bytes per second, aggregated the same way.
- RequestLatency: average, minimum, maximum, total (sum) and count of the requests'
  latencies, measured from the request's arrival to its response (mirror copies: from
  their dispatch). RequestLatency_Pxx: the percentile of the interval's requests
  (average = minimum = maximum = total = that value; count = the requests). Exact
  (nearest rank) when raw requests cover the window and it holds at most
  `EXACT_LIMIT` (20,000) of them; otherwise from rollup histograms, within 1%
  (requestlog_histogram.ALPHA).
- Gauges (connections, CPU, memory, capacity) are samples: at each sampling time the
  series' dimension values are combined (summed for counts, averaged for percentages),
  then average / minimum / maximum / total / count run over the interval's samples.
  ConnectionsActive counts the open client connections that have sent a scoring request
  to the endpoint; NewConnectionsPerSecond, those connections' arrivals per second
  (`ConnectionCounter`, a uvicorn protocol subclass and an ASGI middleware).
A bucket without data has only its timeStamp, except that request counts and bytes
are 0 there (they are known to be zero).

Filters as Azure takes them: `dim eq 'v'` terms joined by `and`, with `or` only between
values of one dimension; `'*'` splits by that dimension; every dimension the filter
names splits the series unless `rollupby` names it. `top` (default 10) and `orderby`
(e.g. `total desc`, default: the first aggregation, descending) pick among the split
series. Dimension names come back lower-cased in `metadatavalues`, as Azure's do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import psutil  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.auth import UNAUTHORIZED, has_arm_token
from emulator.instances import Instance
from emulator.monitor_catalog import DEPLOYMENT_NAMESPACE, ENDPOINT_NAMESPACE, MetricDef
from emulator.monitor_query import MetricsError, Query, Resource, bad_request, parse_query
from emulator.monitor_series import Point, SeriesKey, resource_series
from emulator.requestlog_reader import Snapshot
from emulator.requestlog_schema import Gauge

if TYPE_CHECKING:
    from emulator.service import Emulator

log = logging.getLogger(__name__)

MAX_RESOURCES = 50
SAMPLE_INTERVAL_S = 5.0
_RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)/onlineEndpoints/"
    r"(?P<endpoint>[^/]+)(?:/deployments/(?P<deployment>[^/]+))?/?$",
    re.IGNORECASE,
)


# the answer


def _rank(points: list[Point], aggregation: str) -> float | None:
    values = [p[aggregation] for p in points if p is not None]
    if not values:
        return None
    if aggregation in ("total", "count"):
        return sum(values)
    if aggregation == "average":
        return sum(values) / len(values)
    return min(values) if aggregation == "minimum" else max(values)


def _pick(
    series: dict[SeriesKey, list[Point]], query: Query
) -> list[tuple[SeriesKey, list[Point]]]:
    """The split series Azure returns: ordered by `orderby`, the first `top` of them."""
    items = list(series.items())
    if not query.split:
        return items
    ranked = [(key, points, _rank(points, query.order_by)) for key, points in items]
    ranked.sort(key=lambda item: item[0])
    ranked.sort(
        key=lambda item: (
            item[2] is None,
            0.0 if item[2] is None else (-item[2] if query.descending else item[2]),
        )
    )
    return [(key, points) for key, points, _ in ranked[: query.top]]


def _iso(ts: float) -> str:
    moment = dt.datetime.fromtimestamp(ts, dt.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _metric_json(
    resource: Resource,
    metric: MetricDef,
    series: list[tuple[SeriesKey, list[Point]]],
    query: Query,
) -> dict[str, Any]:
    timestamps = [_iso(query.first_bucket + b * query.interval) for b in range(query.buckets)]
    timeseries = []
    for key, points in series:
        data: list[dict[str, Any]] = []
        for stamp, point in zip(timestamps, points, strict=True):
            entry: dict[str, Any] = {"timeStamp": stamp}
            if point is not None:
                entry.update((a, point[a]) for a in query.aggregations)
            data.append(entry)
        timeseries.append(
            {
                "metadatavalues": [
                    {"name": {"value": d, "localizedValue": d}, "value": v}
                    for d, v in zip(query.split, key, strict=True)
                ],
                "data": data,
            }
        )
    return {
        "id": f"{resource.id}/providers/Microsoft.Insights/metrics/{metric.name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": metric.name, "localizedValue": metric.display},
        "displayDescription": metric.description,
        "unit": metric.unit,
        "timeseries": timeseries,
        "errorCode": "Success",
    }


def answer(
    snap: Snapshot, query: Query, resources: Sequence[Resource], *, region: str, now: float
) -> dict[str, Any]:
    """The getBatch response for some resources of one namespace."""
    values = []
    for resource in resources:
        found = resource_series(snap, query, resource, now=now)
        metrics = [
            _metric_json(resource, metric, _pick(series, query), query)
            for metric, series in zip(query.metrics, found, strict=True)
        ]
        values.append(
            {
                "starttime": _iso(query.start),
                "endtime": _iso(query.end),
                "interval": query.interval_text,
                "namespace": query.namespace,
                "resourceregion": region,
                "resourceid": resource.id,
                "value": metrics,
            }
        )
    return {"values": values}


# the route


def _authorize(request: Request) -> None:
    if not has_arm_token(request):
        raise MetricsError(401, "AuthenticationFailed", UNAUTHORIZED)


async def _resource_ids(request: Request) -> list[str]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from exc
    ids = body.get("resourceids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise bad_request('The request body must be {"resourceids": ["<resource id>", ...]}.')
    if len(ids) > MAX_RESOURCES:
        raise bad_request(
            f"A batch holds at most {MAX_RESOURCES} resource ids; this one has {len(ids)}."
        )
    return ids


def _resolve(
    emulator: Emulator, subscription: str, ids: list[str], namespace: str
) -> tuple[str, list[Resource]]:
    """Check the resource ids against the workspace and the namespace; canonical names."""
    resources = []
    kinds = set()
    for rid in ids:
        match = _RESOURCE.match(rid)
        if match is None:
            raise bad_request(
                f"Resource id '{rid}' is not an online endpoint or deployment of an Azure "
                "Machine Learning workspace."
            )
        scope = (
            f"/subscriptions/{match['sub']}/resourceGroups/{match['rg']}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{match['ws']}"
        )
        if match["sub"].lower() != subscription.lower():
            raise bad_request(
                f"Resource id '{rid}' is not in subscription '{subscription}' of the request; "
                "a batch queries one subscription."
            )
        if scope.lower() != emulator.workspace.path.lower():
            raise MetricsError(
                404,
                "ResourceNotFound",
                f"The resource '{rid}' was not found: this emulator's workspace is "
                f"'{emulator.workspace.path}'.",
            )
        endpoint, deployment = match["endpoint"], match["deployment"]
        doc = emulator.store.get_endpoint(endpoint)
        if doc is not None:
            endpoint = doc["name"]
            if deployment is not None:
                dep_doc = emulator.store.get_deployment(endpoint, deployment)
                deployment = dep_doc["name"] if dep_doc is not None else deployment
        kinds.add(deployment is not None)
        resources.append(Resource(rid, endpoint, deployment))
    if len(kinds) > 1:
        raise bad_request("All resource ids of a batch must be of one resource type.")
    expected = DEPLOYMENT_NAMESPACE if kinds == {True} else ENDPOINT_NAMESPACE
    if namespace.lower() != expected.lower():
        raise bad_request(
            f"metricnamespace '{namespace}' is not valid for resource '{ids[0]}'; its "
            f"namespace is '{expected}'."
        )
    return expected.lower(), resources


def _known(emulator: Emulator, resource: Resource) -> bool:
    if resource.deployment is None:
        return emulator.store.get_endpoint(resource.endpoint) is not None
    return emulator.store.get_deployment(resource.endpoint, resource.deployment) is not None


async def get_batch(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    try:
        _authorize(request)
        params = {k.lower(): v for k, v in request.query_params.items()}
        ids = await _resource_ids(request)
        namespace = params.get("metricnamespace") or ""
        if not namespace:
            raise bad_request("metricnamespace is required.")
        key, resources = _resolve(emulator, request.path_params["sub"], ids, namespace)
        now = time.time()
        query = parse_query(params, key, now=now)
        unknown = [r for r in resources if not _known(emulator, r)]
        region = str(emulator.workspace.doc()["location"])
        reader = emulator.requests.reader()

        def run() -> dict[str, Any]:
            with reader.snapshot() as snap:
                for r in unknown:
                    if not snap.has_data(r.endpoint, r.deployment):
                        raise MetricsError(
                            404,
                            "ResourceNotFound",
                            f"The resource '{r.id}' was not found: no such endpoint or "
                            "deployment, and no metrics recorded for it.",
                        )
                return answer(snap, query, resources, region=region, now=now)

        return JSONResponse(await asyncio.to_thread(run))
    except MetricsError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)


routes = [
    Route("/monitor/subscriptions/{sub}/metrics:getBatch", get_batch, methods=["POST"]),
]


# what the sampler measures


class ConnectionCounter:
    """Client connections per endpoint, for ConnectionsActive and NewConnectionsPerSecond.

    A subclass of uvicorn's HTTP protocol notes each TCP connection as it opens and
    closes (one dict operation each); an ASGI middleware attributes a connection to an
    endpoint at its first scoring request (a prefix test per request). A connection that
    never scores (ARM, metrics) counts for no endpoint.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], str | None] = {}
        self.opened: collections.Counter[str] = collections.Counter()

    def active(self) -> collections.Counter[str]:
        return collections.Counter(e for e in self._open.values() if e is not None)

    def protocol(self, base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
        counter = self

        def connection_made(proto: Any, transport: asyncio.BaseTransport) -> None:
            base.connection_made(proto, transport)
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and len(peer) >= 2:
                proto._bluegreen_peer = (str(peer[0]), int(peer[1]))
                counter._open[proto._bluegreen_peer] = None

        def connection_lost(proto: Any, exc: Exception | None) -> None:
            counter._open.pop(getattr(proto, "_bluegreen_peer", ("", 0)), None)
            base.connection_lost(proto, exc)

        name = f"Counting{base.__name__}"
        methods = {"connection_made": connection_made, "connection_lost": connection_lost}
        return cast(type[asyncio.Protocol], type(name, (base,), methods))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].startswith("/online/"):
                client = scope.get("client")
                if client:
                    peer = (str(client[0]), int(client[1]))
                    if peer in self._open and self._open[peer] is None:
                        endpoint = scope["path"].split("/", 3)[2].lower()
                        self._open[peer] = endpoint
                        self.opened[endpoint] += 1
            await app(scope, receive, send)

        return counted


def instance_state(instance: Instance) -> str:
    """DeploymentCapacity's State: Running, Starting, NotReady or Failed."""
    if instance.ready:
        return "Running"
    process = instance.process
    if process is not None and process.returncode is not None:
        return "Failed"
    return "NotReady" if instance.launched else "Starting"


class Sampler:
    """Every few seconds: each instance's CPU, memory and state, and connection counts."""

    def __init__(self, emulator: Emulator, *, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.emulator = emulator
        self.interval = interval
        self.connections = ConnectionCounter()
        self._task: asyncio.Task[None] | None = None
        self._processes: dict[int, Any] = {}
        self._opened: collections.Counter[str] = collections.Counter()
        self._last = time.time()
        self._cpus = os.cpu_count() or 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sample()
            except Exception:
                log.exception("metrics sampling failed")

    async def sample(self) -> None:
        """Take one sample of everything and hand it to the request log."""
        now = time.time()
        targets = [
            (runtime.pool.spec.endpoint, runtime.name, i.id, i.pid, instance_state(i))
            for runtime in self.emulator.runtimes.values()
            for i in runtime.pool.instances
            if not i.retired
        ]
        rows = await asyncio.to_thread(self._measure, now, targets)
        elapsed = max(now - self._last, 1e-3)
        self._last = now
        active = self.connections.active()
        for route in list(self.emulator.endpoints.routes.values()):
            name = route.name.lower()
            opened = self.connections.opened[name] - self._opened[name]
            self._opened[name] = self.connections.opened[name]
            rows.append(Gauge(now, route.name, "", "", "", "connections", float(active[name])))
            rows.append(Gauge(now, route.name, "", "", "", "new_connections", opened / elapsed))
        self.emulator.requests.add_gauges(rows)

    def _measure(
        self, now: float, targets: list[tuple[str, str, str, int | None, str]]
    ) -> list[Gauge]:
        rows: list[Gauge] = []
        alive = set()
        for endpoint, deployment, instance, pid, state in targets:
            rows.append(Gauge(now, endpoint, deployment, instance, state, "capacity", 1.0))
            if pid is None or state == "Failed":
                continue
            alive.add(pid)
            process = self._processes.get(pid)
            try:
                if process is None:
                    # The first reading only starts cpu_percent's clock.
                    process = self._processes[pid] = psutil.Process(pid)
                    process.cpu_percent(None)
                else:
                    cpu = process.cpu_percent(None) / self._cpus
                    rows.append(Gauge(now, endpoint, deployment, instance, "", "cpu", cpu))
                memory = float(process.memory_percent())
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._processes.pop(pid, None)
                continue
            rows.append(Gauge(now, endpoint, deployment, instance, "", "memory", memory))
        for pid in list(self._processes):
            if pid not in alive:
                del self._processes[pid]
        return rows
