"""One deployment's evidence over a window, from the frames the Metrics queries return.

The counts come from `metrics.requests_by_status` (STATUS_COLUMNS) and
`metrics.traffic_metrics` (REQUEST_COLUMNS, LATENCY_COLUMNS): requests live and mirrored
apart (`unsplit` where the service cannot tell them apart, as on Azure), errors by status
class, and latency percentiles. The comparisons (compare.py), the gates (promotion.py)
and the capacity check (capacity.py) all read an `Evidence`, never a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout.metrics import ALL, LIVE, MIRROR, Window

MODEL_ERROR_STATUS = "424"  # Azure's answer when the model itself answered non-200


@dataclass(frozen=True)
class Evidence:
    """What one deployment served over a window.

    `classified` is the number of requests the status-class split saw: the denominator of
    every error rate (it comes from the same query as the error counts, so a rate is never
    above 1 even when the two queries saw slightly different windows). `model_errors` is
    None when the status frame has no `status_code` column (the status-class query does
    not split by code). Latencies are None without a single latency sample.
    """

    deployment: str
    minutes: float = 0.0
    live: int = 0
    mirrored: int = 0
    unsplit: int = 0  # traffic type 'all': the service has no live/mirror dimension
    classified: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    errors_other: int = 0  # neither 2xx nor 4xx/5xx (an unknown status class)
    model_errors: int | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    peak_per_minute: float = 0.0  # the busiest bucket's requests per minute

    @property
    def requests(self) -> int:
        return self.live + self.mirrored + self.unsplit

    @property
    def errors(self) -> int:
        """Every request that was not answered 2xx."""
        return self.errors_4xx + self.errors_5xx + self.errors_other

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.classified if self.classified else None

    @property
    def per_minute(self) -> float:
        """The mean request rate over the window."""
        return self.requests / self.minutes if self.minutes > 0 else 0.0


def evidence_from_metrics(
    deployment: str,
    *,
    requests: Any,
    status: Any,
    latency: Any,
    window: Window,
) -> Evidence:
    """The evidence of `deployment` in frames shaped as rollout/metrics.py returns them.

    `requests` has REQUEST_COLUMNS, `status` STATUS_COLUMNS (plus, optionally, a
    `status_code` column for the model errors), `latency` LATENCY_COLUMNS with metric P50,
    P95 or P99. Deployment names are matched case-insensitively (Azure may lower-case them).
    A window's latency percentile is the mean of its buckets' percentiles weighted by the
    requests in each bucket: Monitor gives percentiles per bucket, not the raw latencies,
    so this is an estimate, close when the buckets look alike.
    """
    req = _of(requests, deployment)
    sts = _of(status, deployment)
    lat = _of(latency, deployment)
    by_type = req.groupby("traffic_type")["count"].sum() if len(req) else {}
    by_class = sts.groupby("status_class")["count"].sum() if len(sts) else {}
    errors_other = sum(
        int(n) for cls, n in dict(by_class).items() if cls not in ("2xx", "4xx", "5xx")
    )
    model_errors: int | None = None
    if "status_code" in sts.columns:
        codes = sts["status_code"].astype(str)
        model_errors = int(sts.loc[codes == MODEL_ERROR_STATUS, "count"].sum())
    peak = float(req.groupby("time")["value"].sum().max()) if len(req) else 0.0
    return Evidence(
        deployment=deployment,
        minutes=(window.end - window.start).total_seconds() / 60.0,
        live=int(dict(by_type).get(LIVE, 0)),
        mirrored=int(dict(by_type).get(MIRROR, 0)),
        unsplit=int(dict(by_type).get(ALL, 0)),
        classified=int(sts["count"].sum()) if len(sts) else 0,
        errors_4xx=int(dict(by_class).get("4xx", 0)),
        errors_5xx=int(dict(by_class).get("5xx", 0)),
        errors_other=errors_other,
        model_errors=model_errors,
        p50_ms=_percentile(lat, req, "P50"),
        p95_ms=_percentile(lat, req, "P95"),
        p99_ms=_percentile(lat, req, "P99"),
        peak_per_minute=peak if peak == peak else 0.0,  # NaN when every value is missing
    )


def _of(frame: Any, deployment: str) -> Any:
    if not len(frame):
        return frame
    return frame[frame["deployment"].astype(str).str.lower() == deployment.lower()]


def _percentile(latency: Any, requests: Any, metric: str) -> float | None:
    rows = latency[latency["metric"] == metric].dropna(subset=["value"]) if len(latency) else None
    if rows is None or not len(rows):
        return None
    counts = requests.groupby(["time", "traffic_type"])["count"].sum() if len(requests) else None
    weights = {} if counts is None else {key: float(n) for key, n in counts.items()}
    w = [weights.get(key, 0.0) for key in zip(rows["time"], rows["traffic_type"], strict=True)]
    values = [float(v) for v in rows["value"]]
    total = sum(w)
    if total <= 0:  # no counts to weigh by: every bucket alike
        return sum(values) / len(values)
    return sum(v * x for v, x in zip(values, w, strict=True)) / total
