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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import psutil  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.auth import UNAUTHORIZED, has_arm_token
from emulator.instances import Instance
from emulator.monitor_catalog import DEPLOYMENT_NAMESPACE, ENDPOINT_NAMESPACE, MetricDef
from emulator.monitor_query import MetricsError, Query, Resource, bad_request, parse_query
from emulator.requestlog_histogram import grouped_quantiles
from emulator.requestlog_reader import Snapshot
from emulator.requestlog_schema import DROPPED, FloatArray, Gauge, IntArray

if TYPE_CHECKING:
    from emulator.service import Emulator

log = logging.getLogger(__name__)

# Above this many raw requests in a window, latency comes from rollup histograms.
EXACT_LIMIT = 20_000
MAX_RESOURCES = 50
SAMPLE_INTERVAL_S = 5.0
_RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)/onlineEndpoints/"
    r"(?P<endpoint>[^/]+)(?:/deployments/(?P<deployment>[^/]+))?/?$",
    re.IGNORECASE,
)


# computing series

Point = dict[str, float] | None
SeriesKey = tuple[str, ...]


def _request_dims(deployment: str, mirrored: int, status: int, model_status: int) -> dict[str, str]:
    return {
        "deployment": deployment,
        "statuscode": str(status),
        "statuscodeclass": f"{status // 100}xx",
        "modelstatuscode": str(model_status) if model_status else "",
        "traffictype": "mirror" if mirrored else "live",
    }


class _Keys:
    """Which series a combination of dimension values belongs to (None: filtered out)."""

    def __init__(self, query: Query, dims: Callable[..., dict[str, str]]) -> None:
        self._query = query
        self._dims = dims
        self._cache: dict[tuple[Any, ...], SeriesKey | None] = {}

    def __call__(self, *values: Any) -> SeriesKey | None:
        try:
            return self._cache[values]
        except KeyError:
            dims = self._dims(*values)
            key = (
                tuple(dims.get(d, "") for d in self._query.split)
                if self._query.filter.matches(dims)
                else None
            )
            self._cache[values] = key
            return key


def _stats(samples: FloatArray, valid: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Per row of a (buckets x samples) array: count, total, average, minimum, maximum."""
    count = valid.sum(axis=1)
    total = np.where(valid, samples, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = total / count
    minimum = np.where(valid, samples, np.inf).min(axis=1)
    maximum = np.where(valid, samples, -np.inf).max(axis=1)
    return count, total, average, minimum, maximum


def _rate_series(
    rows: Sequence[tuple[int, str, int, int, int, int, int]],
    unit: int,
    query: Query,
    metric: MetricDef,
    now: float,
) -> dict[SeriesKey, list[Point]]:
    """Per-unit samples (requests per minute, bytes per second) aggregated per bucket.

    `rows` are `UnitCount`s: (unit start, deployment, mirrored, status, model status,
    requests, bytes).
    """
    per_bucket = query.interval // unit
    units = query.buckets * per_bucket
    start = query.first_bucket
    keys = _Keys(query, _request_dims)
    index: dict[SeriesKey, int] = {}
    if not query.split:
        index[()] = 0

    def series_of(deployment: str, mirrored: int, status: int, model_status: int) -> int:
        dropped = status == DROPPED
        if (metric.kind == "requests" and dropped) or (metric.kind == "dropped" and not dropped):
            return -1
        if metric.kind == "bytes" and (dropped or mirrored):
            return -1  # mirror copies never cross the endpoint's network
        return _series_number(index, keys(deployment, mirrored, status, model_status))

    combos: dict[tuple[str, int, int, int], int] = {}
    sids = np.fromiter(
        (
            combos[c] if (c := r[1:5]) in combos else combos.setdefault(c, series_of(*c))
            for r in rows
        ),
        dtype=np.int64,
        count=len(rows),
    )
    slot = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    slot = (slot - start) // unit
    amount = np.fromiter(
        (r[6] if metric.kind == "bytes" else r[5] for r in rows), dtype=np.float64, count=len(rows)
    )
    keep = (sids >= 0) & (slot >= 0) & (slot < units)
    values = np.bincount(
        sids[keep] * units + slot[keep], weights=amount[keep], minlength=len(index) * units
    ).reshape(len(index), query.buckets, per_bucket)
    started = (start + np.arange(units) * unit <= now).reshape(query.buckets, per_bucket)
    scale = 1 / unit if metric.kind == "bytes" else 60 / unit
    out: dict[SeriesKey, list[Point]] = {}
    for key, row in index.items():
        raw = values[row]
        count, total, average, minimum, maximum = _stats(raw * scale, started)
        if metric.kind != "bytes":
            total = np.where(started, raw, 0.0).sum(axis=1)  # requests, not rates
        columns = {
            "average": average.tolist(),
            "minimum": minimum.tolist(),
            "maximum": maximum.tolist(),
            "total": total.tolist(),
            "count": (count if unit == 60 else np.ones_like(count)).astype(float).tolist(),
        }
        present = (count > 0).tolist()
        out[key] = [
            {name: column[b] for name, column in columns.items()} if present[b] else None
            for b in range(query.buckets)
        ]
    return out


@dataclass
class _Latencies:
    """Latency statistics per series and bucket: arrays of shape (series, buckets)."""

    series: list[SeriesKey]
    n: IntArray
    total: FloatArray
    minimum: FloatArray
    maximum: FloatArray
    quantiles: dict[float, FloatArray]


def _latencies(
    snap: Snapshot, query: Query, resource: Resource, quantiles: Sequence[float]
) -> _Latencies:
    """Count, sum, min, max and the wanted percentiles of latency, per series and bucket.

    Exact (nearest rank over the raw requests) when raw requests cover the window and it
    holds at most EXACT_LIMIT of them; otherwise from rollup histograms (within ALPHA).
    """
    start, stop, interval, buckets = query.first_bucket, query.stop, query.interval, query.buckets
    keys = _Keys(query, lambda d, m: _request_dims(d, m, 200, 200))
    index: dict[SeriesKey, int] = {}
    if not query.split:
        index[()] = 0
    exact = (
        start >= snap.raw_since
        and snap.count_raw(resource.endpoint, start, stop, EXACT_LIMIT + 1) <= EXACT_LIMIT
    )
    if exact:
        combos = {
            c: number
            for c in sorted(snap.latency_combos(resource.endpoint, start, stop))
            if (number := _series_number(index, keys(*c))) >= 0
        }
        group, latency = snap.raw_latencies(resource.endpoint, start, interval, buckets, combos)
        order = np.lexsort((latency, group))
        group, latency = group[order], latency[order]
        size = len(index) * buckets
        n = np.bincount(group, minlength=size).astype(np.int64)
        total = np.bincount(group, weights=latency, minlength=size).astype(np.float64)
        firsts = np.cumsum(n) - n
        present = n > 0
        padded = np.append(latency, np.nan)  # so that empty groups index safely

        def at(offsets: IntArray) -> FloatArray:
            return np.where(
                present, padded[np.where(present, firsts + offsets, len(latency))], np.nan
            )

        minimum, maximum = at(np.zeros_like(n)), at(n - 1)
        by_quantile = {
            q: at(np.maximum(1, np.ceil(q * n - 1e-9).astype(np.int64)) - 1) for q in quantiles
        }
    else:
        rollups = snap.latency_rollups(
            resource.endpoint, start, stop, interval, histograms=bool(quantiles)
        )
        sids_list = [_series_number(index, keys(r.deployment, r.mirrored)) for r in rollups]
        bucket_list = [(r.bucket - start) // interval for r in rollups]
        sids = np.array(sids_list, dtype=np.int64)
        bucket = np.array(bucket_list, dtype=np.int64)
        keep = (sids >= 0) & (bucket >= 0) & (bucket < buckets)
        kept = [r for r, k in zip(rollups, keep.tolist(), strict=True) if k]
        group = sids[keep] * buckets + bucket[keep]
        size = len(index) * buckets
        n = np.bincount(group, weights=[r.n for r in kept], minlength=size).astype(np.int64)
        total = np.bincount(group, weights=[r.latency_sum for r in kept], minlength=size).astype(
            np.float64
        )
        minimum = np.full(size, np.inf)
        maximum = np.full(size, -np.inf)
        np.minimum.at(minimum, group, np.array([r.latency_min for r in kept], dtype=np.float64))
        np.maximum.at(maximum, group, np.array([r.latency_max for r in kept], dtype=np.float64))
        found = grouped_quantiles(group, [(r.hist_lo, r.hist) for r in kept], size, quantiles)
        # The bin's value, kept within the exact extremes: still within ALPHA.
        by_quantile = {q: np.clip(found[i], minimum, maximum) for i, q in enumerate(quantiles)}
    shape = (len(index), buckets)
    return _Latencies(
        series=list(index),
        n=n.reshape(shape),
        total=total.reshape(shape),
        minimum=minimum.reshape(shape),
        maximum=maximum.reshape(shape),
        quantiles={q: v.reshape(shape) for q, v in by_quantile.items()},
    )


def _series_number(index: dict[SeriesKey, int], key: SeriesKey | None) -> int:
    """A series' row, numbered in order of first appearance; -1 when filtered out."""
    return -1 if key is None else index.setdefault(key, len(index))


def _latency_series(
    stats: _Latencies, query: Query, metric: MetricDef
) -> dict[SeriesKey, list[Point]]:
    out: dict[SeriesKey, list[Point]] = {}
    for row, key in enumerate(stats.series):
        n = stats.n[row].tolist()
        if metric.quantile is None:
            columns = {
                "average": (stats.total[row] / np.maximum(stats.n[row], 1)).tolist(),
                "minimum": stats.minimum[row].tolist(),
                "maximum": stats.maximum[row].tolist(),
                "total": stats.total[row].tolist(),
            }
        else:
            value = stats.quantiles[metric.quantile][row].tolist()
            columns = dict.fromkeys(("average", "minimum", "maximum", "total"), value)
        points: list[Point] = []
        for b in range(query.buckets):
            if not n[b]:
                points.append(None)
                continue
            point = {name: values[b] for name, values in columns.items()}
            point["count"] = float(n[b])
            points.append(point)
        out[key] = points
    return out


def _gauge_series(
    rows: Iterable[Gauge], query: Query, metric: MetricDef
) -> dict[SeriesKey, list[Point]]:
    keys = _Keys(query, lambda instance, state: {"instanceid": instance, "state": state})
    at_time: dict[tuple[SeriesKey, float], list[float]] = {}
    for row in rows:
        if row.metric != metric.gauge:
            continue
        key = keys(row.instance, row.state)
        if key is None:
            continue
        acc = at_time.setdefault((key, row.ts), [0.0, 0.0])
        acc[0] += row.value
        acc[1] += 1
    samples: dict[SeriesKey, dict[int, list[float]]] = {}
    if not query.split:
        samples[()] = {}
    for (key, ts), (total, n) in at_time.items():
        value = total / n if metric.combine == "mean" else total
        bucket = int((ts - query.first_bucket) // query.interval)
        if 0 <= bucket < query.buckets:
            samples.setdefault(key, {}).setdefault(bucket, []).append(value)
    out: dict[SeriesKey, list[Point]] = {}
    for key, buckets in samples.items():
        points: list[Point] = []
        for b in range(query.buckets):
            values = buckets.get(b)
            if not values:
                points.append(None)
                continue
            points.append(
                {
                    "average": sum(values) / len(values),
                    "minimum": min(values),
                    "maximum": max(values),
                    "total": sum(values),
                    "count": float(len(values)),
                }
            )
        out[key] = points
    return out


_COLUMN_OF = {
    "deployment": "deployment",
    "traffictype": "mirrored",
    "statuscode": "status",
    "statuscodeclass": "status",
    "modelstatuscode": "model_status",
}


def _key_columns(query: Query) -> set[str]:
    """The request-log key columns a query's filter and metrics tell apart."""
    columns = {_COLUMN_OF[d] for d in query.filter.dimensions if d in _COLUMN_OF}
    if any(m.kind == "bytes" for m in query.metrics):
        columns.add("mirrored")  # mirror copies are not network traffic
    return columns


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
    quantiles = [m.quantile for m in query.metrics if m.quantile is not None]
    for resource in resources:
        latency: _Latencies | None = None
        gauges: list[Gauge] | None = None
        counts: list[tuple[int, str, int, int, int, int, int]] | None = None
        metrics = []
        for metric in query.metrics:
            if metric.kind == "latency":
                if latency is None:
                    latency = _latencies(snap, query, resource, quantiles)
                series = _latency_series(latency, query, metric)
            elif metric.kind == "gauge":
                if gauges is None:
                    gauges = snap.gauges(
                        resource.endpoint,
                        resource.deployment or "",
                        [m.gauge for m in query.metrics if m.kind == "gauge"],
                        query.first_bucket,
                        query.stop,
                        unit=min(query.interval, 60),
                    )
                series = _gauge_series(gauges, query, metric)
            else:
                unit = 60 if query.interval >= 60 else 10
                if counts is None:
                    counts = snap.unit_counts(
                        resource.endpoint, query.first_bucket, query.stop, unit, _key_columns(query)
                    )
                series = _rate_series(counts, unit, query, metric, now)
            metrics.append(_metric_json(resource, metric, _pick(series, query), query))
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
