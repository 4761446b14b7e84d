"""The numbers of a metric query: each metric's series for one resource, bucket by bucket.

The request log (`requestlog_reader.Snapshot`) gives request counts per minute or per
10 s, latencies (raw or as rollup histograms) and gauge samples; this module folds them
into the query's buckets and splits them into series by the dimensions the filter names.

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
  (`monitor_sampler.ConnectionCounter`).
A bucket without data is None (its timeStamp only, in the answer), except that request
counts and bytes are 0 there (they are known to be zero).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emulator.monitor_catalog import MetricDef
from emulator.monitor_query import Query, Resource
from emulator.requestlog_histogram import grouped_quantiles
from emulator.requestlog_reader import Snapshot
from emulator.requestlog_schema import DROPPED, FloatArray, Gauge, IntArray

# Above this many raw requests in a window, latency comes from rollup histograms.
EXACT_LIMIT = 20_000

Point = dict[str, float] | None
SeriesKey = tuple[str, ...]


def resource_series(
    snap: Snapshot, query: Query, resource: Resource, *, now: float
) -> list[dict[SeriesKey, list[Point]]]:
    """Each of the query's metrics' series for one resource, in the order of `query.metrics`.

    The request log is read once per kind of metric (latencies, gauges, counts), however
    many of the query's metrics need it.
    """
    quantiles = [m.quantile for m in query.metrics if m.quantile is not None]
    latency: _Latencies | None = None
    gauges: list[Gauge] | None = None
    counts: list[tuple[int, str, int, int, int, int, int]] | None = None
    out = []
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
        out.append(series)
    return out


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
