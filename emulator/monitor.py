"""Azure Monitor metrics of the emulator's endpoints and deployments: the batch API.

`POST {metrics_url}/subscriptions/{s}/metrics:getBatch` answers exactly as Azure's
metrics batch API does for azure-monitor-querymetrics' `MetricsClient.query_resources`:
query parameters starttime, endtime, interval, metricnamespace, metricnames,
aggregation, top, orderby, filter, rollupby (and any api-version), body
`{"resourceids": [...]}`, the ARM bearer token, and Azure's response shape. This module
is the route: it checks the token and the resource ids against the workspace, and
shapes the answer (the `top` series by `orderby`, one timeseries per series, dimension
names lower-cased in `metadatavalues`, as Azure's are).

The parts:
- `monitor_catalog.py`: the metrics and their dimensions;
- `monitor_query.py`: parsing and checking the query (interval, timespan, filter,
  aggregation, top, orderby), and the errors it answers;
- `monitor_series.py`: each metric's numbers per bucket and series, from the request
  log (`requestlog.py`: raw requests, 10 s / 1 min / 1 h rollups) and its gauges;
- `monitor_sampler.py`: the gauges (instance CPU, memory, state; connections) sampled
  every few seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.auth import UNAUTHORIZED, has_arm_token
from emulator.monitor_catalog import DEPLOYMENT_NAMESPACE, ENDPOINT_NAMESPACE, MetricDef
from emulator.monitor_query import MetricsError, Query, Resource, bad_request, parse_query
from emulator.monitor_series import Point, SeriesKey, resource_series
from emulator.requestlog_reader import Snapshot
from emulator.service import Emulator

MAX_RESOURCES = 50
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
