"""Azure Monitor metrics of the emulator, read with the real azure-monitor-querymetrics client.

The first tests run the request log's rollups, retention and percentiles on synthetic
rows with old timestamps (no server). The rest run against an emulator of their own:
an endpoint with blue (90%), green (10%) and shadow (10% mirrored) deployments of
tests/emulator/fixtures/behave, a known burst of requests, and `MetricsClient`
queries whose answers must be exactly what was sent (and, for latency, exactly what
the emulator recorded in requests.db).
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import CodeConfiguration, OnlineRequestSettings
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.monitor.querymetrics import MetricsClient, MetricsQueryResult

from emulator import monitor, monitor_query, monitor_series
from emulator.apply import register_local_assets
from emulator.monitor_catalog import ENDPOINT_NAMESPACE
from emulator.requestlog import RequestLog
from emulator.requestlog_histogram import ALPHA, bin_values, latency_bins, nearest_rank
from emulator.requestlog_schema import DROPPED, Record
from rollout.workspace import StaticTokenCredential
from tests.conftest import RunningEmulator, wait_until

FIXTURES = Path(__file__).parent / "fixtures"
ENDPOINT = "metrics-ep"
ENDPOINT_NS = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
DEPLOYMENT_NS = ENDPOINT_NS + "/deployments"
NOW = 1_750_000_000.0  # the synthetic tests' "now" (June 2025)


# the request log, on synthetic rows


def _records(start: float, end: float, per_second: float, seed: int = 1) -> list[Record]:
    rng = random.Random(seed)
    out, t = [], start
    while True:
        t += rng.expovariate(per_second)
        if t >= end:
            return out
        deployment = rng.choice(["blue"] * 8 + ["green", "shadow"])
        mirrored = deployment == "shadow"
        status = DROPPED if mirrored and rng.random() < 0.1 else rng.choice([200] * 9 + [424])
        out.append(
            Record(t, "ep", deployment, mirrored, status, 200, rng.lognormvariate(2, 0.6), 100, 30)
        )


def _write(log: RequestLog, records: list[Record], step: float = 30.0) -> None:
    """Hand records to the write path as the flush task does, `step` seconds at a time."""
    if not records:
        return
    edge = records[0].ts + step
    batch: list[Record] = []
    for record in records:
        while record.ts >= edge:
            log.write(batch, now=edge)
            batch, edge = [], edge + step
        batch.append(record)
    log.write(batch, now=edge)


def _answer(
    log: RequestLog, params: dict[str, str], *, now: float = NOW, exact_limit: int | None = None
) -> dict[str, Any]:
    query = monitor_query.parse_query(params, ENDPOINT_NAMESPACE.lower(), now=now)
    resource = monitor_query.Resource("/ep", "ep", None)
    previous = monitor_series.EXACT_LIMIT
    if exact_limit is not None:
        monitor_series.EXACT_LIMIT = exact_limit
    try:
        with log.reader().snapshot() as snap:
            return monitor.answer(snap, query, [resource], region="local", now=now)
    finally:
        monitor_series.EXACT_LIMIT = previous


def _series(answer: dict[str, Any], metric: str) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    found = next(m for m in answer["values"][0]["value"] if m["name"]["value"] == metric)
    return {tuple(v["value"] for v in t["metadatavalues"]): t["data"] for t in found["timeseries"]}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def test_histogram_bins_read_back_within_alpha() -> None:
    values = np.exp(np.random.default_rng(3).uniform(np.log(0.01), np.log(180_000), 100_000))
    back = bin_values(latency_bins(values))
    assert np.max(np.abs(back - values) / values) <= ALPHA + 1e-12


def test_rollups_keep_every_request_count_exact(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.db")
    records = _records(NOW - 3 * 3600, NOW, per_second=2)
    _write(log, records)
    log.write([], now=NOW + 60)
    db = log._db
    served = sum(r.status != DROPPED for r in records)
    for tier in ("10s", "1m"):
        (counted,) = db.execute(f"SELECT SUM(n) FROM counts_{tier}").fetchone()
        assert counted >= 0.99 * len(records)  # the 1 min tier lags by under a minute
    (latencies,) = db.execute("SELECT SUM(n) FROM latency_10s").fetchone()
    assert latencies == served
    # Whatever tier answers, a window's request count is exact.
    for interval, hours in (("PT10S", 1), ("PT1M", 3), ("PT5M", 3), ("PT1H", 3)):
        answer = _answer(
            log,
            {
                "metricnames": "RequestsPerMinute",
                "aggregation": "total",
                "interval": interval,
                "starttime": _iso(NOW - hours * 3600),
                "endtime": _iso(NOW),
            },
        )
        first = NOW - hours * 3600
        first -= first % monitor_query.INTERVALS[interval]
        expected = sum(first <= r.ts < NOW and r.status != DROPPED for r in records)
        ((points),) = _series(answer, "RequestsPerMinute").values()
        assert sum(p.get("total", 0) for p in points) == expected, interval


def test_old_requests_are_compacted_into_rollups_and_then_deleted(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.db", retention_days=7, raw_hours=6)
    records = _records(NOW - 9 * 86400, NOW, per_second=0.02)
    _write(log, records, step=600)
    log.write([], now=NOW + 60)
    db = log._db

    def oldest(table: str, column: str = "bucket") -> float:
        return float(db.execute(f"SELECT MIN({column}) FROM {table}").fetchone()[0])

    assert oldest("requests", "ts") >= NOW - 6 * 3600
    assert oldest("counts_10s") >= NOW - 24 * 3600 - 10
    assert oldest("latency_10s") >= NOW - 24 * 3600 - 10
    assert oldest("counts_1m") >= NOW - 7 * 86400 - 60
    assert oldest("latency_1h") >= NOW - 7 * 86400 - 3600
    assert oldest("latency_1h") < NOW - 6.9 * 86400
    # Two days ago, only rollups are left; they still count every request there.
    start = (NOW - 2 * 86400) // 3600 * 3600  # whole buckets are counted: align the window
    end = start + 86400
    answer = _answer(
        log,
        {
            "metricnames": "RequestsPerMinute,RequestLatency",
            "aggregation": "total,count",
            "interval": "PT1H",
            "filter": "deployment eq '*'",
            "starttime": _iso(start),
            "endtime": _iso(end),
        },
    )
    sent = Counter(r.deployment for r in records if start <= r.ts < end and r.status != DROPPED)
    requests = _series(answer, "RequestsPerMinute")
    assert {k[0]: sum(p["total"] for p in v) for k, v in requests.items()} == sent
    latency = _series(answer, "RequestLatency")
    assert {k[0]: sum(p.get("count", 0) for p in v) for k, v in latency.items()} == sent


def test_a_log_without_rollups_is_caught_up_on_start(tmp_path: Path) -> None:
    path = tmp_path / "requests.db"
    records = _records(NOW - 3600, NOW, per_second=1)
    with sqlite3.connect(path) as db:  # a request log from before rollups existed
        db.executescript(
            "CREATE TABLE requests (ts REAL NOT NULL, endpoint TEXT NOT NULL, deployment TEXT "
            "NOT NULL, mirrored INTEGER NOT NULL, status INTEGER NOT NULL, model_status "
            "INTEGER, latency_ms REAL NOT NULL, bytes_in INTEGER NOT NULL, bytes_out INTEGER "
            "NOT NULL)"
        )
        db.executemany("INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
    log = RequestLog(path)
    log.write([], now=NOW)
    (folded,) = log._db.execute("SELECT SUM(n) FROM counts_10s").fetchone()
    assert folded == sum(r.ts < NOW // 10 * 10 for r in records)


def test_percentiles_from_rollups_are_within_the_stated_bound(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.db")
    records = _records(NOW - 2 * 3600, NOW, per_second=3, seed=5)
    _write(log, records)
    log.write([], now=NOW + 60)
    params = {
        "metricnames": ",".join(f"RequestLatency_P{p}" for p in (50, 90, 95, 99)),
        "aggregation": "average",
        "interval": "PT5M",
        "filter": "deployment eq '*' and trafficType eq '*'",
        "starttime": _iso(NOW - 2 * 3600),
        "endtime": _iso(NOW),
    }
    exact = _answer(log, params, exact_limit=10**9)
    estimated = _answer(log, params, exact_limit=0)
    compared = 0
    for metric in params["metricnames"].split(","):
        truth, approx = _series(exact, metric), _series(estimated, metric)
        assert truth.keys() == approx.keys()
        for key, points in truth.items():
            for want, got in zip(points, approx[key], strict=True):
                assert want.keys() == got.keys()
                if "average" in want:
                    assert abs(got["average"] - want["average"]) <= ALPHA * want["average"]
                    compared += 1
    assert compared > 100
    # And the exact answers are the nearest-rank percentiles of the recorded latencies.
    first = (NOW - 2 * 3600) // 300 * 300
    blue = sorted(
        r.latency_ms
        for r in records
        if r.deployment == "blue" and first <= r.ts < first + 300 and r.status != DROPPED
    )
    point = _series(exact, "RequestLatency_P95")[("blue", "live")][0]
    assert point["average"] == blue[nearest_rank(0.95, len(blue)) - 1]


@pytest.mark.parametrize(
    ("text", "groups", "split"),
    [
        ("deployment eq '*'", [[("deployment", "eq", "*")]], ["deployment"]),
        (
            "deployment eq 'blue' or deployment eq 'green'",
            [[("deployment", "eq", "blue"), ("deployment", "eq", "green")]],
            ["deployment"],
        ),
        (
            "(deployment eq 'Blue' or deployment eq 'green') and statusCodeClass eq '*'",
            [
                [("deployment", "eq", "blue"), ("deployment", "eq", "green")],
                [("statuscodeclass", "eq", "*")],
            ],
            ["deployment", "statuscodeclass"],
        ),
        ("statusCode ne '200'", [[("statuscode", "ne", "200")]], ["statuscode"]),
    ],
)
def test_filters_are_parsed_as_azure_reads_them(
    text: str, groups: list[list[tuple[str, str, str]]], split: list[str]
) -> None:
    parsed = monitor_query.parse_filter(text)
    assert [[(t.dimension, t.op, t.value) for t in g] for g in parsed.groups] == groups
    assert parsed.dimensions == split


@pytest.mark.parametrize(
    "text",
    ["deployment eq 'blue' or statusCode eq '200'", "deployment = 'blue'", "deployment eq 'x' and"],
)
def test_invalid_filters_are_refused_naming_the_problem(text: str) -> None:
    with pytest.raises(monitor_query.MetricsError, match="filter") as caught:
        monitor_query.parse_filter(text)
    assert caught.value.status == 400


# the API, against an emulator of our own


@dataclass
class Burst:
    """What the module's burst sent: the answers and the client-side latencies (ms)."""

    started: float = 0.0
    ended: float = 0.0
    served_by: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    client_ms: dict[str, list[float]] = field(default_factory=dict)


class Metrics:
    def __init__(self, emulator: RunningEmulator, examples: Path) -> None:
        self.emulator = emulator
        self.examples = examples
        facts = emulator.facts
        assert facts is not None
        self.facts = facts
        self.ml = emulator.workspace().ml_client
        self.client = MetricsClient(
            endpoint=facts.metrics_url,
            credential=StaticTokenCredential(facts.token),
            connection_verify=facts.ca_cert,
        )
        self.burst = Burst()

    @property
    def endpoint_id(self) -> str:
        f = self.facts
        return (
            f"/subscriptions/{f.subscription_id}/resourceGroups/{f.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{f.workspace_name}/onlineEndpoints/"
            f"{ENDPOINT}"
        )

    def deploy(self, name: str, *, instances: int = 1) -> None:
        d = load_online_deployment(str(self.examples / "blue-deployment.yml"))
        d.name, d.endpoint_name = name, ENDPOINT
        d.code_configuration = CodeConfiguration(
            code=str(FIXTURES / "behave"), scoring_script="score.py"
        )
        d.instance_count = instances
        d.environment_variables = {"DEPLOYMENT_LABEL": name}
        d.request_settings = OnlineRequestSettings(max_concurrent_requests_per_instance=4)
        register_local_assets(self.emulator.state_dir, d)
        self.ml.online_deployments.begin_create_or_update(d).result()

    def query(
        self,
        metrics: list[str],
        *,
        resource: str | None = None,
        namespace: str = ENDPOINT_NS,
        interval: timedelta = timedelta(minutes=1),
        **kwargs: Any,
    ) -> MetricsQueryResult:
        start = datetime.fromtimestamp(self.burst.started - 60, UTC)
        end = datetime.fromtimestamp(max(self.burst.ended, time.time()) + 60, UTC)
        (result,) = self.client.query_resources(
            resource_ids=[resource or self.endpoint_id],
            metric_namespace=namespace,
            metric_names=metrics,
            timespan=(start, end),
            granularity=interval,
            **kwargs,
        )
        return result

    def totals(
        self,
        metric: str,
        dims: list[str],
        aggregation: str = "total",
        *,
        over_buckets: Callable[[list[float]], float] = sum,
        **kwargs: Any,
    ) -> dict[tuple[str, ...], float]:
        """Each series' `aggregation`, combined over the window's buckets (summed, or e.g.
        `max` for a gauge's peak: a window may span two buckets)."""
        result = self.query([metric], aggregations=[aggregation], **kwargs)
        out: dict[tuple[str, ...], float] = {}
        for series in result.metrics[metric].timeseries:
            key = tuple(series.metadata_values[d.lower()] for d in dims)
            out[key] = over_buckets([getattr(p, aggregation) or 0 for p in series.data])
        return out

    def recorded(self) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.emulator.state_dir / "requests.db") as db:
            return db.execute(
                "SELECT ts, deployment, mirrored, status, latency_ms FROM requests "
                "WHERE endpoint = ? ORDER BY ts",
                (ENDPOINT,),
            ).fetchall()


def _send_burst(m: Metrics) -> None:
    """300 header-less requests (90/10 live, 10% mirrored), 20 model errors, 5 bad keys."""
    uri = m.ml.online_endpoints.get(ENDPOINT).scoring_uri
    key = m.ml.online_endpoints.get_keys(ENDPOINT).primary_key
    burst = m.burst
    burst.started = time.time()
    with httpx.Client(
        verify=m.facts.ca_cert, timeout=60, limits=httpx.Limits(max_connections=8)
    ) as client:

        def one(headers: dict[str, str], body: dict[str, Any]) -> None:
            started = time.perf_counter()
            response = client.post(uri, json=body, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            served = response.headers.get("azureml-model-deployment", "")
            burst.served_by[served] += 1
            burst.statuses[(served, response.status_code)] += 1
            burst.client_ms.setdefault(served, []).append(elapsed)

        plain = {"Authorization": f"Bearer {key}"}
        jobs = [(plain, {})] * 300
        jobs += [({**plain, "azureml-model-deployment": "green"}, {"status": 400})] * 20
        jobs += [({"Authorization": "Bearer wrong"}, {})] * 5
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda job: one(*job), jobs))
    burst.ended = time.time()


@pytest.fixture(scope="module")
def metrics(
    emulator_factory: Callable[[str], RunningEmulator], examples: Path
) -> Iterator[Metrics]:
    running = emulator_factory("monitor")
    running.start(args=("--retention-days", "3"))
    m = Metrics(running, examples)
    endpoint = load_online_endpoint(str(examples / "endpoint.yml"))
    endpoint.name = ENDPOINT
    m.ml.online_endpoints.begin_create_or_update(endpoint).result()
    m.deploy("blue", instances=2)
    m.deploy("green")
    m.deploy("shadow")
    entity = m.ml.online_endpoints.get(ENDPOINT)
    entity.traffic = {"blue": 90, "green": 10}
    entity.mirror_traffic = {"shadow": 10}
    m.ml.online_endpoints.begin_create_or_update(entity).result()
    # The sampler has seen blue's instances once (so CPU readings have a baseline).
    blue_id = f"{m.endpoint_id}/deployments/blue"
    m.burst.started = time.time()
    wait_until(
        lambda: m.totals(
            "DeploymentCapacity", [], "count", resource=blue_id, namespace=DEPLOYMENT_NS
        ),
        what="a first sample of blue's instances",
    )
    _send_burst(m)
    assert m.burst.statuses[("blue", 200)] == 270
    assert m.burst.statuses[("green", 200)] == 30
    yield m
    m.client.close()
    running.stop()


def _mirrored(m: Metrics) -> Counter[int]:
    """Statuses of the mirror copies: 30 were due (10% of 300); some may be dropped (0).

    Waits until every request of the burst is in requests.db (325 sent, 30 mirrored).
    """
    rows = wait_until(lambda: len(r := m.recorded()) == 355 and r, what="355 request records")
    return Counter(r[3] for r in rows if r[2])


def test_requests_per_deployment_and_status_are_exactly_what_was_sent(metrics: Metrics) -> None:
    mirrored = _mirrored(metrics)
    expected = {
        ("blue", "200"): 270,
        ("green", "200"): 30,
        ("green", "424"): 20,
        ("", "401"): 5,
        ("shadow", "200"): mirrored[200],
    }
    dims = ["deployment", "statusCode"]
    flt = "deployment eq '*' and statusCode eq '*'"
    found = wait_until(
        lambda: (t := metrics.totals("RequestsPerMinute", dims, filter=flt)) == expected and t,
        what=f"request counts {expected}",
    )
    assert found == expected
    dropped = metrics.totals("MirrorDroppedPerMinute", ["deployment"], filter="deployment eq '*'")
    assert sum(dropped.values()) == mirrored[DROPPED]


def test_status_class_and_model_status_split_and_filter(metrics: Metrics) -> None:
    mirrored = _mirrored(metrics)
    classes = metrics.totals(
        "RequestsPerMinute", ["statusCodeClass"], filter="statusCodeClass eq '*'"
    )
    assert classes == {("2xx",): 300 + mirrored[200], ("4xx",): 25}
    model = metrics.totals(
        "RequestsPerMinute", ["modelStatusCode"], filter="modelStatusCode eq '400'"
    )
    assert model == {("400",): 20}
    one = metrics.totals(
        "RequestsPerMinute",
        ["deployment", "statusCode"],
        filter="deployment eq 'green' and statusCode eq '424'",
    )
    assert one == {("green", "424"): 20}


def test_or_filters_split_and_rollupby_merges(metrics: Metrics) -> None:
    flt = "deployment eq 'blue' or deployment eq 'green'"
    split = metrics.totals("RequestsPerMinute", ["deployment"], filter=flt)
    assert split == {("blue",): 270, ("green",): 50}
    merged = metrics.totals("RequestsPerMinute", [], filter=flt, roll_up_by="deployment")
    assert merged == {(): 320}


def test_traffic_type_tells_mirrored_requests_from_live_ones(metrics: Metrics) -> None:
    mirrored = _mirrored(metrics)
    found = metrics.totals(
        "RequestsPerMinute",
        ["deployment", "trafficType"],
        filter="deployment eq '*' and trafficType eq '*'",
    )
    assert found == {
        ("blue", "live"): 270,
        ("green", "live"): 50,
        ("", "live"): 5,
        ("shadow", "mirror"): mirrored[200],
    }
    latency = metrics.totals(
        "RequestLatency",
        ["deployment", "trafficType"],
        "count",
        filter="deployment eq '*' and trafficType eq 'mirror'",
    )
    assert latency == {("shadow", "mirror"): mirrored[200]}


@pytest.mark.parametrize("seconds", [10, 60, 300])
def test_every_interval_counts_the_same_requests_on_aligned_buckets(
    metrics: Metrics, seconds: int
) -> None:
    result = metrics.query(
        ["RequestsPerMinute"],
        interval=timedelta(seconds=seconds),
        aggregations=["Total", "Count", "Average", "Maximum"],
        filter="deployment eq 'blue'",
    )
    (series,) = result.metrics["RequestsPerMinute"].timeseries
    assert series.metadata_values == {"deployment": "blue"}
    assert result.granularity == timedelta(seconds=seconds)
    assert sum(p.total or 0 for p in series.data) == 270
    for point in series.data:
        assert point.timestamp.timestamp() % seconds == 0
        if point.total is None:  # a bucket that has not started yet has only its timestamp
            assert point.timestamp.timestamp() > time.time() - 1
            continue
        if seconds >= 60 and point.count == seconds // 60:
            assert point.average == pytest.approx(point.total / point.count)
        if seconds == 10:
            # PT10S (emulator only): the per-minute rate of those 10 seconds.
            assert point.average == pytest.approx(point.total * 6)
        assert point.maximum >= point.average
    stamps = [p.timestamp for p in series.data]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_only_the_asked_aggregations_come_back(metrics: Metrics) -> None:
    result = metrics.query(["RequestsPerMinute", "RequestLatency"], aggregations=["Total"])
    for metric in result.metrics:
        for point in metric.timeseries[0].data:
            assert point.average is None and point.minimum is None and point.count is None
    assert result.metrics["RequestsPerMinute"].unit == "Count"
    assert result.metrics["RequestLatency"].unit == "MilliSeconds"
    assert result.namespace == ENDPOINT_NS
    assert result.resource_region == "local"


@pytest.mark.parametrize(("order", "expected"), [("total desc", ("blue",)), ("total asc", ("",))])
def test_top_and_orderby_pick_the_split_series(
    metrics: Metrics, order: str, expected: tuple[str, ...]
) -> None:
    found = metrics.totals(
        "RequestsPerMinute",
        ["deployment"],
        filter="deployment eq '*'",
        max_results=1,
        order_by=order,
    )
    assert list(found) == [expected]


def test_latency_percentiles_are_those_of_the_recorded_requests(metrics: Metrics) -> None:
    _mirrored(metrics)
    names = ["RequestLatency_P50", "RequestLatency_P90", "RequestLatency_P95", "RequestLatency_P99"]
    result = metrics.query(
        [*names, "RequestLatency"],
        aggregations=["Average", "Minimum", "Maximum", "Count"],
        filter="deployment eq '*'",
    )
    rows = [r for r in metrics.recorded() if r[3] != DROPPED]
    by_bucket: dict[tuple[str, float], list[float]] = {}
    for ts, deployment, _mirrored_copy, _status, latency in rows:
        by_bucket.setdefault((deployment, ts // 60 * 60), []).append(latency)
    checked = 0
    for name in names:
        q = int(name.rsplit("P", 1)[1]) / 100
        for series in result.metrics[name].timeseries:
            deployment = series.metadata_values["deployment"]
            for point in series.data:
                values = sorted(by_bucket.get((deployment, point.timestamp.timestamp()), []))
                if not values:
                    assert point.average is None
                    continue
                assert point.count == len(values)
                assert point.average == values[nearest_rank(q, len(values)) - 1]
                checked += 1
    assert checked >= 4 * 4
    latency = result.metrics["RequestLatency"]
    for series in latency.timeseries:
        deployment = series.metadata_values["deployment"]
        for point in (p for p in series.data if p.count):
            values = by_bucket[(deployment, point.timestamp.timestamp())]
            assert point.average == pytest.approx(sum(values) / len(values))
            assert (point.minimum, point.maximum) == (min(values), max(values))
        # Server-side latency never exceeds what the client measured for the same requests.
        if deployment in ("blue", "green"):
            assert max(p.maximum or 0 for p in series.data) <= max(
                metrics.burst.client_ms[deployment]
            )


def test_cpu_memory_and_capacity_of_a_deployments_instances(metrics: Metrics) -> None:
    blue = f"{metrics.endpoint_id}/deployments/blue"

    def cpu() -> dict[tuple[str, ...], float]:
        return metrics.totals(
            "CpuUtilizationPercentage",
            ["instanceId"],
            "maximum",
            resource=blue,
            namespace=DEPLOYMENT_NS,
            filter="instanceId eq '*'",
        )

    # Both instances are measured, and the burst kept them busy for a moment.
    readings = wait_until(
        lambda: len(c := cpu()) == 2 and max(c.values()) > 0 and c,
        what="CPU readings of blue's 2 instances",
    )
    assert all(k[0].startswith("blue-") for k in readings)
    memory = metrics.query(
        ["CpuMemoryUtilizationPercentage"],
        resource=blue,
        namespace=DEPLOYMENT_NS,
        aggregations=["Average"],
    )
    values = [p.average for p in memory.metrics[0].timeseries[0].data if p.average is not None]
    assert values and all(0 < v < 100 for v in values)
    capacity = metrics.query(
        ["DeploymentCapacity"],
        resource=blue,
        namespace=DEPLOYMENT_NS,
        aggregations=["Average", "Maximum"],
    )
    points = [p for p in capacity.metrics[0].timeseries[0].data if p.average is not None]
    assert points and all(p.maximum == 2 for p in points)
    states = metrics.totals(
        "DeploymentCapacity",
        ["State"],
        "maximum",
        over_buckets=max,
        resource=blue,
        namespace=DEPLOYMENT_NS,
        filter="State eq '*'",
    )
    assert states == {("Running",): 2}


def test_connections_are_counted_for_the_endpoint(metrics: Metrics) -> None:
    # The burst opened its 8 connections; the next sample counts them.
    wait_until(
        lambda: metrics.totals("NewConnectionsPerSecond", [], "maximum")[()] > 0,
        what="new connections",
    )
    uri = metrics.ml.online_endpoints.get(ENDPOINT).scoring_uri
    key = metrics.ml.online_endpoints.get_keys(ENDPOINT).primary_key
    with httpx.Client(verify=metrics.facts.ca_cert, timeout=30) as client:
        assert client.post(uri, json={}, headers={"Authorization": f"Bearer {key}"}).is_success
        # That keep-alive connection stays open until a sample sees it.
        wait_until(
            lambda: metrics.totals("ConnectionsActive", [], "maximum")[()] >= 1,
            what="an active connection",
        )


def test_network_bytes_are_bytes_per_second_of_live_requests(metrics: Metrics) -> None:
    result = metrics.query(["NetworkBytes"], aggregations=["Average", "Total"])
    (series,) = result.metrics["NetworkBytes"].timeseries
    assert result.metrics["NetworkBytes"].unit == "BytesPerSecond"
    assert sum(p.total or 0 for p in series.data) > 0


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"metric_names": ["RequestsPerHour"]}, "RequestsPerHour"),
        (
            {"metric_namespace": "Microsoft.Compute/virtualMachines"},
            "Microsoft.Compute/virtualMachines",
        ),
        ({"granularity": timedelta(minutes=2)}, "PT2M"),
        (
            {"metric_names": ["RequestLatency"], "filter": "statusCode eq '*'"},
            "statuscode",
        ),
        ({"aggregations": ["Median"]}, "Median"),
    ],
)
def test_bad_queries_are_refused_in_azures_shape_naming_the_value(
    metrics: Metrics, kwargs: dict[str, Any], named: str
) -> None:
    query: dict[str, Any] = {
        "resource_ids": [metrics.endpoint_id],
        "metric_namespace": ENDPOINT_NS,
        "metric_names": ["RequestsPerMinute"],
        "timespan": timedelta(hours=1),
        **kwargs,
    }
    with pytest.raises(HttpResponseError) as caught:
        metrics.client.query_resources(**query)
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "BadRequest"
    assert named in str(caught.value.message)


def test_a_wrong_token_is_401(metrics: Metrics) -> None:
    client = MetricsClient(
        endpoint=metrics.facts.metrics_url,
        credential=StaticTokenCredential("not-the-token"),
        connection_verify=metrics.facts.ca_cert,
    )
    with pytest.raises(ClientAuthenticationError):
        client.query_resources(
            resource_ids=[metrics.endpoint_id],
            metric_namespace=ENDPOINT_NS,
            metric_names=["RequestsPerMinute"],
        )


def test_an_unknown_endpoint_is_404(metrics: Metrics) -> None:
    with pytest.raises(HttpResponseError) as caught:
        metrics.client.query_resources(
            resource_ids=[metrics.endpoint_id.replace(ENDPOINT, "no-such-ep")],
            metric_namespace=ENDPOINT_NS,
            metric_names=["RequestsPerMinute"],
        )
    assert caught.value.status_code == 404
    assert "no-such-ep" in str(caught.value.message)


def test_retention_days_are_kept_in_the_state_directory(metrics: Metrics) -> None:
    with sqlite3.connect(metrics.emulator.state_dir / "state.db") as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'retention_days'").fetchone()
    assert math.isclose(float(value), 3.0)
