"""rollout.metrics: the queries the real MetricsClient sends, and the frames made of its answers.

No mocks of SDK clients: a real `MetricsClient` runs its whole azure-core pipeline over a
`requests` session whose adapter answers with recorded getBatch bodies instead of the
network, so what is checked is what goes on the wire and what the SDK's own deserializer
makes of the answer.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.monitor.querymetrics import Metric, MetricsClient, MetricsQueryResult, MetricValue
from azure.monitor.querymetrics import TimeSeriesElement as Series
from requests.adapters import BaseAdapter
from urllib3.response import HTTPResponse

from rollout import metrics
from rollout.errors import NotFound, ServiceError
from rollout.workspace import StaticTokenCredential, Workspace

SUB, RG, WS = "00000000-0000-0000-0000-000000000000", "rg", "ws"
ENDPOINT_ID = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices"
    f"/workspaces/{WS}/onlineEndpoints/my-endpoint"
)
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WINDOW = metrics.Window(T0, T0 + timedelta(minutes=3), timedelta(minutes=1))


# --- recorded answers ------------------------------------------------------------------------


def _point(minute: int, **aggregations: float) -> dict[str, Any]:
    stamp = (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"timeStamp": stamp, **aggregations}


def _series(dims: dict[str, str], points: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadatavalues": [
            {"name": {"value": k, "localizedValue": k}, "value": v} for k, v in dims.items()
        ],
        "data": points,
    }


def _metric(resource: str, name: str, series: list[dict[str, Any]], unit: str = "Count") -> Any:
    return {
        "id": f"{resource}/providers/Microsoft.Insights/metrics/{name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": name, "localizedValue": name},
        "displayDescription": "",
        "unit": unit,
        "timeseries": series,
        "errorCode": "Success",
    }


def _batch(*values: tuple[str, list[dict[str, Any]]], interval: str = "PT1M") -> dict[str, Any]:
    return {
        "values": [
            {
                "starttime": "2026-01-05T12:00:00Z",
                "endtime": "2026-01-05T12:03:00Z",
                "interval": interval,
                "namespace": metrics.ENDPOINT_NAMESPACE,
                "resourceregion": "eastus",
                "resourceid": resource,
                "value": value,
            }
            for resource, value in values
        ]
    }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class Recorded(BaseAdapter):  # type: ignore[misc]
    """A requests adapter that answers from `answer(request)` and keeps what was sent."""

    def __init__(self, answer: Callable[[requests.PreparedRequest], tuple[int, Any]]) -> None:
        super().__init__()
        self.answer = answer
        self.sent: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        self.timeouts.append(kwargs.get("timeout"))
        status, body = self.answer(request)
        content = json.dumps(body).encode()
        response = requests.Response()
        response.status_code = status
        response.raw = HTTPResponse(body=io.BytesIO(content), preload_content=False, status=status)
        response._content = content
        response.headers["Content-Type"] = "application/json"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def query(self, index: int = -1) -> dict[str, str]:
        params = parse_qs(urlsplit(self.sent[index].url or "").query)
        return {k: v[0] for k, v in params.items()}


def _client(adapter: Recorded) -> MetricsClient:
    session = requests.Session()
    session.mount("https://", adapter)
    return MetricsClient(
        "https://eastus.metrics.monitor.azure.com",
        StaticTokenCredential("token"),
        transport=RequestsTransport(session=session, session_owner=False),
        retry_total=0,
    )


def _traffic_answer(*, with_traffic_type: bool) -> dict[str, Any]:
    def dims(deployment: str, kind: str) -> dict[str, str]:
        return {"deployment": deployment, **({"trafficType": kind} if with_traffic_type else {})}

    requests_series = [
        _series(dims("blue", "live"), [_point(0, total=90.0), _point(1, total=60.0), _point(2)]),
        _series(dims("green", "mirror"), [_point(0, total=9.0), _point(1, total=6.0)]),
    ]
    latency = {
        name: [
            _series(dims("blue", "live"), [_point(0, average=10.0 * (i + 1))]),
            _series(dims("green", "mirror"), [_point(0, average=20.0 * (i + 1))]),
        ]
        for i, name in enumerate(metrics.LATENCY.values())
    }
    return _batch(
        (
            ENDPOINT_ID,
            [
                _metric(ENDPOINT_ID, metrics.REQUESTS, requests_series),
                *(_metric(ENDPOINT_ID, name, s, "MilliSeconds") for name, s in latency.items()),
            ],
        )
    )


# --- the request on the wire -----------------------------------------------------------------


def test_traffic_metrics_asks_for_totals_and_latency_split_by_deployment_and_traffic_type() -> None:
    adapter = Recorded(lambda _: (200, _traffic_answer(with_traffic_type=True)))
    metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, WINDOW, timeout=7)

    (sent,) = adapter.sent
    assert urlsplit(sent.url or "").path == f"/subscriptions/{SUB}/metrics:getBatch"
    assert json.loads(sent.body or b"{}") == {"resourceids": [ENDPOINT_ID]}
    query = adapter.query()
    assert query["metricnamespace"] == metrics.ENDPOINT_NAMESPACE
    assert query["metricnames"].split(",") == [
        "RequestsPerMinute",
        "RequestLatency_P50",
        "RequestLatency_P95",
        "RequestLatency_P99",
    ]
    assert query["filter"] == "deployment eq '*' and trafficType eq '*'"
    assert query["aggregation"] == "Total,Average"
    assert query["interval"] == "PT1M"
    assert query["starttime"].startswith("2026-01-05T12:00:00")
    assert query["endtime"].startswith("2026-01-05T12:03:00")
    assert int(query["top"]) >= 50  # the service's default of 10 series would drop some


def test_every_call_carries_the_timeout_to_the_socket() -> None:
    adapter = Recorded(lambda _: (200, _traffic_answer(with_traffic_type=True)))
    metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, WINDOW, timeout=7)
    (timeout,) = adapter.timeouts
    assert timeout is not None
    assert max(timeout if isinstance(timeout, tuple) else (timeout,)) <= 7


# --- frames ----------------------------------------------------------------------------------


def test_requests_become_a_frame_per_deployment_and_traffic_type_in_requests_per_minute() -> None:
    adapter = Recorded(lambda _: (200, _traffic_answer(with_traffic_type=True)))
    result = metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, WINDOW)

    assert result.mirror_dimension is True
    frame = result.requests
    assert list(frame.columns) == metrics.REQUEST_COLUMNS
    blue = frame[frame["deployment"] == "blue"].sort_values("time")
    assert set(blue["traffic_type"]) == {"live"}
    assert list(blue["count"]) == [90.0, 60.0, 0.0]  # a bucket without a total is 0 requests
    assert list(blue["value"]) == [90.0, 60.0, 0.0]  # PT1M: the count is the rate
    green = frame[frame["deployment"] == "green"]
    assert set(green["traffic_type"]) == {"mirror"}
    assert green["count"].sum() == 15
    assert str(frame["time"].dt.tz) == "UTC"


def test_latency_percentiles_are_named_p50_p95_p99() -> None:
    adapter = Recorded(lambda _: (200, _traffic_answer(with_traffic_type=True)))
    latency = metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, WINDOW).latency
    assert list(latency.columns) == metrics.LATENCY_COLUMNS
    blue = latency[latency["deployment"] == "blue"].set_index("metric")["value"]
    assert blue.to_dict() == {"P50": 10.0, "P95": 20.0, "P99": 30.0}
    green = latency[latency["deployment"] == "green"]
    assert set(green["traffic_type"]) == {"mirror"}


def test_a_finer_granularity_is_still_shown_per_minute() -> None:
    window = metrics.Window(T0, T0 + timedelta(minutes=3), timedelta(seconds=10))
    adapter = Recorded(lambda _: (200, _traffic_answer(with_traffic_type=True)))
    requests_frame = metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, window).requests
    first = requests_frame[requests_frame["deployment"] == "blue"].sort_values("time").iloc[0]
    assert first["count"] == 90
    assert first["value"] == pytest.approx(540)  # 90 in ten seconds


def test_the_last_bucket_is_divided_by_the_time_it_covers_so_far() -> None:
    window = metrics.Window(T0, T0 + timedelta(minutes=2, seconds=30), timedelta(minutes=1))
    times = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    import pandas as pd

    minutes = metrics.bucket_minutes(pd.Series(times), window)
    assert list(minutes) == [1.0, 1.0, 0.5]


# --- Azure has no trafficType dimension ------------------------------------------------------


def _azure_like(request: requests.PreparedRequest) -> tuple[int, Any]:
    """Like Azure: an unknown dimension in the filter is a 400."""
    query = parse_qs(urlsplit(request.url or "").query)
    if "trafficType" in query.get("filter", [""])[0]:
        return 400, _error(
            "BadRequest", "Dimension name(s) trafficType don't exist on metric RequestsPerMinute"
        )
    return 200, _traffic_answer(with_traffic_type=False)


def test_without_the_traffic_type_dimension_the_query_is_repeated_without_it() -> None:
    adapter = Recorded(_azure_like)
    result = metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, WINDOW)

    assert adapter.query(0)["filter"] == "deployment eq '*' and trafficType eq '*'"
    assert adapter.query(1)["filter"] == "deployment eq '*'"
    assert result.mirror_dimension is False
    assert set(result.requests["traffic_type"]) == {metrics.ALL}
    assert set(result.latency["traffic_type"]) == {metrics.ALL}
    assert result.requests.groupby("deployment")["count"].sum().to_dict() == {
        "blue": 150,
        "green": 15,
    }


def test_once_known_absent_the_dimension_is_not_asked_for_again() -> None:
    adapter = Recorded(_azure_like)
    metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, WINDOW, mirror_dimension=False)
    assert len(adapter.sent) == 1
    assert adapter.query()["filter"] == "deployment eq '*'"


def test_a_bad_request_that_is_not_about_the_dimension_is_reported_with_its_message() -> None:
    adapter = Recorded(lambda _: (400, _error("BadRequest", "Invalid interval PT10S")))
    with pytest.raises(ServiceError, match="Invalid interval PT10S"):
        metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, WINDOW)


def test_series_that_lack_the_dimension_mean_it_is_absent() -> None:
    """A service that ignores an unknown dimension instead of refusing it."""
    adapter = Recorded(lambda _: (200, _traffic_answer(with_traffic_type=False)))
    result = metrics.traffic_metrics(_client(adapter), ENDPOINT_ID, WINDOW)
    assert result.mirror_dimension is False
    assert set(result.requests["traffic_type"]) == {metrics.ALL}


# --- errors in words -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, ServiceError, "az login"),
        (403, ServiceError, "Monitoring Reader"),
        (404, NotFound, "may have been deleted"),
        (429, ServiceError, "throttling"),
        (500, ServiceError, "refused"),
    ],
)
def test_service_errors_become_rollout_errors_that_say_what_to_do(
    status: int, error: type[Exception], words: str
) -> None:
    adapter = Recorded(lambda _: (status, _error("Code", "the service's own words")))
    with pytest.raises(error) as raised:
        metrics.requests_by_status(_client(adapter), ENDPOINT_ID, WINDOW, mirror_dimension=False)
    text = str(raised.value)
    assert text.startswith("reading requests by status class")
    assert words in text


def test_an_unreachable_service_is_a_service_error() -> None:
    client = MetricsClient(
        "https://127.0.0.1:9", StaticTokenCredential("token"), retry_total=0, connection_timeout=2
    )
    with pytest.raises(ServiceError, match=r"could not be reached|no answer within"):
        metrics.traffic_metrics(client, ENDPOINT_ID, WINDOW, timeout=3)


# --- status classes, instances, capacity -----------------------------------------------------


def test_requests_by_status_class_split_by_deployment() -> None:
    series = [
        _series({"deployment": "blue", "statusCodeClass": "2xx", "statusCode": "200",
                 "trafficType": "live"}, [_point(0, total=50.0)]),
        _series({"deployment": "green", "statusCodeClass": "5xx", "statusCode": "503",
                 "trafficType": "mirror"}, [_point(0, total=5.0), _point(1, total=1.0)]),
        _series({"deployment": "green", "statusCodeClass": "4xx", "statusCode": "424",
                 "trafficType": "mirror"}, [_point(1, total=2.0)]),
    ]  # fmt: skip
    adapter = Recorded(
        lambda _: (200, _batch((ENDPOINT_ID, [_metric(ENDPOINT_ID, metrics.REQUESTS, series)])))
    )
    frame = metrics.requests_by_status(_client(adapter), ENDPOINT_ID, WINDOW)
    assert adapter.query()["filter"] == (
        "deployment eq '*' and statusCodeClass eq '*' and statusCode eq '*' and trafficType eq '*'"
    )
    assert list(frame.columns) == metrics.STATUS_COLUMNS
    totals = frame.groupby(["deployment", "traffic_type", "status_class"])["count"].sum()
    assert totals.to_dict() == {
        ("blue", "live", "2xx"): 50,
        ("green", "mirror", "4xx"): 2,
        ("green", "mirror", "5xx"): 6,
    }
    codes = frame.groupby(["deployment", "status_code"])["count"].sum()
    assert codes.to_dict() == {("blue", "200"): 50, ("green", "424"): 2, ("green", "503"): 6}


def test_instance_metrics_take_the_deployment_from_each_resource_in_one_batch_call() -> None:
    ids = {d: f"{ENDPOINT_ID}/deployments/{d}" for d in ("blue", "green")}
    answer = _batch(
        *(
            (
                rid,
                [
                    _metric(rid, metrics.CPU, [
                        _series({"instanceId": f"{d}-0"}, [_point(0, average=40.0)]),
                        _series({"instanceId": f"{d}-1"}, [_point(0, average=60.0)]),
                    ], "Percent"),
                    _metric(rid, metrics.MEMORY, [
                        _series({"instanceId": f"{d}-0"}, [_point(0, average=10.0)]),
                    ], "Percent"),
                ],
            )
            for d, rid in ids.items()
        )
    )  # fmt: skip
    adapter = Recorded(lambda _: (200, answer))
    frame = metrics.instance_metrics(_client(adapter), ids, WINDOW)
    assert len(adapter.sent) == 1
    assert json.loads(adapter.sent[0].body or b"{}") == {"resourceids": list(ids.values())}
    assert adapter.query()["metricnamespace"] == metrics.DEPLOYMENT_NAMESPACE
    assert adapter.query()["filter"] == "instanceId eq '*'"
    assert list(frame.columns) == metrics.INSTANCE_COLUMNS
    cpu = frame[frame["metric"] == metrics.CPU].set_index(["deployment", "instance"])["value"]
    assert cpu.to_dict() == {
        ("blue", "blue-0"): 40.0,
        ("blue", "blue-1"): 60.0,
        ("green", "green-0"): 40.0,
        ("green", "green-1"): 60.0,
    }


def test_capacity_per_deployment_and_state() -> None:
    rid = f"{ENDPOINT_ID}/deployments/blue"
    answer = _batch(
        (rid, [_metric(rid, metrics.CAPACITY, [
            _series({"State": "Running"}, [_point(0, average=2.0), _point(1, average=3.0)]),
        ])])
    )  # fmt: skip
    adapter = Recorded(lambda _: (200, answer))
    frame = metrics.deployment_capacity(_client(adapter), {"blue": rid}, WINDOW)
    assert adapter.query()["filter"] == "State eq '*'"
    assert list(frame.columns) == metrics.CAPACITY_COLUMNS
    assert list(frame["value"]) == [2.0, 3.0]
    assert set(frame["deployment"]) == {"blue"}
    assert set(frame["state"]) == {"Running"}


def test_no_deployments_means_no_call_and_an_empty_frame() -> None:
    adapter = Recorded(lambda _: (500, {}))
    assert metrics.instance_metrics(_client(adapter), {}, WINDOW).empty
    assert metrics.deployment_capacity(_client(adapter), {}, WINDOW).empty
    assert adapter.sent == []


def test_results_frame_reads_sdk_model_objects() -> None:
    result = MetricsQueryResult(
        timespan="x/y",
        granularity=timedelta(minutes=1),
        metrics=[
            Metric(
                id=f"{ENDPOINT_ID}/providers/Microsoft.Insights/metrics/RequestsPerMinute",
                type="Microsoft.Insights/metrics",
                name="RequestsPerMinute",
                unit="Count",
                display_description="",
                timeseries=[
                    Series(
                        metadata_values={"Deployment": "blue", "trafficType": "live"},
                        data=[MetricValue(timestamp=T0, total=3.0), MetricValue(timestamp=T0)],
                    )
                ],
            )
        ],
    )
    frame = metrics.results_frame(
        [result], aggregation="total", dimensions={"trafficType": "traffic_type"}
    )
    assert frame[["deployment", "traffic_type", "value"]].values.tolist() == [
        ["blue", "live", 3.0]
    ]  # dimension names match case-insensitively; a point without the total is dropped


def test_endpoint_metrics_reports_each_failed_part_and_keeps_the_others() -> None:
    def answer(request: requests.PreparedRequest) -> tuple[int, Any]:
        if "DeploymentCapacity" in (request.url or ""):
            return 500, _error("InternalError", "capacity is down")
        if "Cpu" in (request.url or ""):
            return 200, _batch()
        return 200, _traffic_answer(with_traffic_type=True)

    ws = _workspace(metrics_url="https://127.0.0.1:1/monitor")
    data = metrics.endpoint_metrics(
        ws, _client(Recorded(answer)), "my-endpoint", ["blue", "green"], WINDOW
    )
    assert set(data.problems) == {"capacity"}
    assert "capacity is down" in data.problems["capacity"]
    assert data.total_requests == 165
    assert data.capacity.empty
    assert data.mirror_dimension is True


# --- client, ids, time -----------------------------------------------------------------------


def _workspace(**changes: Any) -> Workspace:
    values: dict[str, Any] = {
        "kind": "azure",
        "subscription_id": SUB,
        "resource_group": RG,
        "workspace_name": WS,
        "ml_client": None,
        "credential": StaticTokenCredential("token"),
    }
    values.update(changes)
    return Workspace(**values)


def test_the_emulator_is_reached_at_its_metrics_url() -> None:
    ws = _workspace(kind="emulator", metrics_url="https://127.0.0.1:8443/monitor/")
    assert metrics.metrics_endpoint(ws) == "https://127.0.0.1:8443/monitor"


def test_azure_is_reached_at_the_workspace_region() -> None:
    assert metrics.metrics_endpoint(_workspace(location="westeurope")) == (
        "https://westeurope.metrics.monitor.azure.com"
    )


def test_resource_ids_name_the_endpoint_and_deployment() -> None:
    ws = _workspace()
    assert metrics.endpoint_resource_id(ws, "my-endpoint") == ENDPOINT_ID
    assert metrics.deployment_resource_id(ws, "my-endpoint", "blue") == (
        f"{ENDPOINT_ID}/deployments/blue"
    )


def test_ten_seconds_is_offered_only_below_a_minute_where_the_service_has_it() -> None:
    fifteen = timedelta(minutes=15)
    emulator = metrics.granularity_choices(fifteen, sub_minute=True)
    azure = metrics.granularity_choices(fifteen, sub_minute=False)
    assert emulator[0] == timedelta(seconds=10)
    assert timedelta(seconds=10) not in azure
    assert azure[0] == timedelta(minutes=1)


def test_long_ranges_get_coarser_granularities_only() -> None:
    week = metrics.granularity_choices(timedelta(days=7), sub_minute=True)
    assert timedelta(minutes=1) not in week  # 10,080 points per series
    assert week[0] == timedelta(minutes=15)
    for span in (timedelta(minutes=15), timedelta(hours=4), timedelta(days=1), timedelta(days=7)):
        assert metrics.granularity_choices(span, sub_minute=False), span


@pytest.mark.parametrize(
    ("span", "sub_minute", "expected"),
    [
        (timedelta(minutes=15), True, timedelta(seconds=10)),
        (timedelta(hours=1), True, timedelta(seconds=10)),
        (timedelta(hours=1), False, timedelta(minutes=1)),
        (timedelta(hours=4), True, timedelta(minutes=1)),
        (timedelta(days=1), False, timedelta(minutes=5)),
        (timedelta(days=7), False, timedelta(minutes=30)),
    ],
)
def test_the_default_granularity_gives_a_readable_number_of_buckets(
    span: timedelta, sub_minute: bool, expected: timedelta
) -> None:
    choices = metrics.granularity_choices(span, sub_minute=sub_minute)
    assert metrics.default_granularity(span, choices) == expected


@pytest.mark.parametrize(
    ("seconds", "iso"),
    [(10, "PT10S"), (60, "PT1M"), (300, "PT5M"), (3600, "PT1H"), (21600, "PT6H"), (86400, "P1D")],
)
def test_granularities_are_named_as_azure_monitor_names_them(seconds: int, iso: str) -> None:
    assert metrics.iso_duration(timedelta(seconds=seconds)) == iso


def test_dropped_mirror_copies_are_read_where_the_service_counts_them() -> None:
    series = [_series({"deployment": "green"}, [_point(0, total=3.0), _point(1)])]
    answer = _batch((ENDPOINT_ID, [_metric(ENDPOINT_ID, metrics.MIRROR_DROPPED, series)]))
    adapter = Recorded(lambda _: (200, answer))
    frame = metrics.mirror_dropped(_client(adapter), ENDPOINT_ID, WINDOW)
    assert frame is not None
    assert list(frame.columns) == metrics.DROPPED_COLUMNS
    assert frame.groupby("deployment")["count"].sum().to_dict() == {"green": 3}
    assert adapter.query()["metricnames"] == metrics.MIRROR_DROPPED


def test_a_service_without_the_dropped_metric_answers_none() -> None:
    adapter = Recorded(
        lambda _: (400, _error("BadRequest", "Failed to find metric configuration for provider"))
    )
    assert metrics.mirror_dropped(_client(adapter), ENDPOINT_ID, WINDOW) is None


def test_dropped_copies_are_not_asked_for_where_mirrors_are_not_told_apart() -> None:
    adapter = Recorded(_azure_like)
    ws = _workspace(location="eastus")
    data = metrics.endpoint_metrics(
        ws, _client(adapter), "my-endpoint", [], WINDOW, mirror_dimension=False
    )
    names = {adapter.query(i)["metricnames"] for i in range(len(adapter.sent))}
    assert metrics.MIRROR_DROPPED not in names
    assert data.dropped is None
    assert data.mirror_dimension is False
