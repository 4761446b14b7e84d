"""The review report: gathered from an audit log of its own, rendered as one HTML file that
escapes what people typed, inlines plotly.js once and refers to nothing outside itself."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from components.report_download import figures
from rollout import drift, history, plan_store
from rollout.endpoints import DeploymentView, EndpointView
from rollout.evidence import Evidence
from rollout.gates import Verdict
from rollout.metrics import (
    LATENCY_COLUMNS,
    REQUEST_COLUMNS,
    STATUS_COLUMNS,
    EndpointMetrics,
    Window,
)
from rollout.plan_store import ComparisonRecord
from rollout.promotion import Plan, Transition
from rollout.report import Report, gather, plan_range, report_filename, report_window
from rollout.report_html import render

WS = "emulator:test"
EP = "my-endpoint"
T0 = 1_800_000_000.0  # the range starts here
HOSTILE = "<script>alert('x')</script> & more"


def _deployment(name: str, live: int, mirror: int = 0, count: int = 1) -> DeploymentView:
    return DeploymentView(name, "Succeeded", f"model-{name}:1", "Standard_DS3_v2", count, live,
                          mirror, 5000, 1)  # fmt: skip


def _view(traffic: dict[str, int], mirror: dict[str, int] | None = None) -> EndpointView:
    mirror = mirror or {}
    deployments = tuple(
        _deployment(n, traffic.get(n, 0), mirror.get(n, 0)) for n in ("blue", "green")
    )
    return EndpointView(EP, "Succeeded", "key", "https://127.0.0.1:9999/score", traffic, mirror,
                        deployments)  # fmt: skip


def _traffic(path: Path, at: float, before: dict[str, int], after: dict[str, int],
             *, reason: str = "", mirror: tuple[dict[str, int], dict[str, int]] = ({}, {})
             ) -> None:  # fmt: skip
    change = history.record(
        workspace=WS, endpoint=EP, action="traffic", who="alice", path=path, reason=reason,
        before={"traffic": before, "mirror": mirror[0]},
        after={"traffic": after, "mirror": mirror[1]}, duration_s=2.0,
    )  # fmt: skip
    with history._connect(path) as db:  # the log stamps entries now; these happened at `at`
        db.execute("UPDATE changes SET at = ? WHERE id = ?", (at, change.id))


def _metrics(window: Window) -> EndpointMetrics:
    times = pd.date_range(window.start, periods=6, freq="10s", tz=UTC)
    requests = pd.DataFrame(
        [{"time": t, "deployment": d, "traffic_type": k, "metric": "RequestsPerMinute",
          "count": n, "value": n * 6.0}
         for t in times for d, k, n in (("blue", "live", 9), ("green", "mirror", 1))],
        columns=REQUEST_COLUMNS,
    )  # fmt: skip
    status = pd.DataFrame(
        [{"time": t, "deployment": "blue", "traffic_type": "live", "status_class": c,
          "status_code": code, "metric": "RequestsPerMinute", "count": n, "value": n * 6.0}
         for t in times for c, code, n in (("2xx", "200", 8), ("5xx", "500", 1))],
        columns=STATUS_COLUMNS,
    )  # fmt: skip
    latency = pd.DataFrame(
        [{"time": t, "deployment": d, "traffic_type": "live", "metric": p, "value": v}
         for t in times for d in ("blue", "green") for p, v in (("P50", 20.0), ("P95", 40.0))],
        columns=LATENCY_COLUMNS,
    )  # fmt: skip
    empty = pd.DataFrame()
    return EndpointMetrics(window, requests, latency, status, empty, empty, True)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "history.db"
    _traffic(path, T0 + 60, {"blue": 100}, {"blue": 100}, reason=HOSTILE,
             mirror=({}, {"green": 10}))  # fmt: skip
    _traffic(path, T0 + 120, {"blue": 100}, {"blue": 90, "green": 10}, reason="canary 10%",
             mirror=({"green": 10}, {}))  # fmt: skip
    return path


def _report(log: Path, *, view: EndpointView | None, plan: Plan | None = None) -> Report:
    window = report_window(T0, T0 + 300, sub_minute=True)
    return gather(
        workspace=WS, label="the emulator", endpoint=EP, start=T0, end=T0 + 300, view=view,
        metrics=_metrics(window), generated_by="bob", plan=plan, now=T0 + 300, path=log,
    )  # fmt: skip


def _html(report: Report) -> str:
    return render(report, figures(report, _metrics(report_window(T0, T0 + 300, sub_minute=True))))


def test_the_state_before_is_walked_back_from_the_state_now(log: Path) -> None:
    report = _report(log, view=_view({"blue": 90, "green": 10}))
    before, after = report.before.snapshot, report.after.snapshot
    assert before is not None and after is not None
    assert (before.traffic, before.mirror) == ({"blue": 100}, {})
    assert (after.traffic, after.mirror) == ({"blue": 90, "green": 10}, {})
    assert before.deployments == {"blue": 1, "green": 1}
    assert [r.reason for r in report.timeline] == [HOSTILE, "canary 10%"]


def test_new_scaled_and_deleted_deployments_are_walked_back(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    entries = [
        ("create_deployment", {"deployments": ["blue"]},
         {"deployment": "green", "model": "model-green:1", "instance_count": 1}),
        ("scale", {"deployment": "green", "instance_count": 1},
         {"deployment": "green", "instance_count": 3}),
        ("delete", {"deployment": "old", "model": "m:1", "instance_count": 2, "live": 0},
         {"deployment": "old", "deleted": True}),
    ]  # fmt: skip
    for n, (action, before, after) in enumerate(entries):
        change = history.record(workspace=WS, endpoint=EP, action=action, before=before,
                                after=after, path=path)  # fmt: skip
        with history._connect(path) as db:
            db.execute("UPDATE changes SET at = ? WHERE id = ?", (T0 + 10 * (n + 1), change.id))
    now = _view({"blue": 100})
    now = EndpointView(EP, "Succeeded", "key", now.scoring_uri, {"blue": 100}, {},
                       (_deployment("blue", 100), _deployment("green", 0, count=3)))  # fmt: skip
    report = _report(path, view=now)
    assert report.before.snapshot is not None
    assert report.before.snapshot.deployments == {"blue": 1, "old": 2}
    assert [r.what for r in report.timeline] == [
        "new deployment green",
        "scale green",
        "delete deployment old",
    ]


def test_an_outside_change_is_in_the_timeline_and_walked_back(log: Path) -> None:
    # The dashboard saw blue 90/green 10 after its change; then someone set 50/50 elsewhere.
    drift.observe(WS, _view({"blue": 90, "green": 10}), now=T0 + 130, path=log)
    drift.observe(WS, _view({"blue": 50, "green": 50}), now=T0 + 200, path=log)
    report = _report(log, view=_view({"blue": 50, "green": 50}))
    (outside,) = [r for r in report.timeline if r.outside]
    assert outside.who == "outside the dashboard" and outside.what == "traffic"
    assert report.before.snapshot is not None
    assert report.before.snapshot.traffic == {"blue": 100}


def test_a_gone_endpoint_is_said_to_be_gone(log: Path) -> None:
    html = _html(_report(log, view=None))
    assert "The endpoint did not exist (it was deleted)." in html


def test_a_reason_with_markup_is_escaped(log: Path) -> None:
    html = _html(_report(log, view=_view({"blue": 90, "green": 10})))
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html


def test_plotly_is_inlined_once_and_nothing_outside_the_file_is_referred_to(log: Path) -> None:
    html = _html(_report(log, view=_view({"blue": 90, "green": 10})))
    assert html.count("* plotly.js v") == 1  # the library's own banner
    assert html.count("Plotly.newPlot(") == 3  # requests, latency, errors
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref\s*=", html, re.IGNORECASE)
    # plotly.js's own strings name plotly.com and the SVG namespace: the rest of the page
    # (markup, styles, the figures' data) names no address but the scoring URI, as text.
    library = html[html.index("<script>") : html.index("</script>")]
    page = html.replace(library, "")
    assert not re.search(r"""\b(src|href)\s*=""", page, re.IGNORECASE)
    assert not re.search(r"@import|@font-face|url\(", page, re.IGNORECASE)
    assert re.findall(r"https?://[^\s\"'<]+", page) == ["https://127.0.0.1:9999/score"]


def test_the_sections_are_all_there(log: Path) -> None:
    path = log
    comparison = ComparisonRecord(
        T0 + 150, WS, EP, "blue", "green", "sample request", 20, 20, 19, 0.95, 0, 0, 1e-6,
        1e-3, False,
    )  # fmt: skip
    plan_store.record_comparison(comparison, path=path)
    html = _html(_report(path, view=_view({"blue": 90, "green": 10})))
    for heading in ("Before and after", "Timeline of changes", "Requests, latency and errors",
                    "Prediction comparisons"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in html
    assert "<title>Rollout review: my-endpoint</title>" in html
    assert "model-green:1" in html and "canary 10%" in html
    assert "95.0%" in html and "sample request" in html  # the comparison
    assert "Generated</th><td>" in html and "by bob" in html


def test_a_plan_has_its_steps_verdicts_and_numbers(log: Path) -> None:
    verdict = Verdict("P95 ratio", "fail", 1.8, 1.5, "1.80× > 1.50×: slower")
    plan = Plan(EP, "blue", "green", workspace=WS)
    saved = plan_store.save_plan(plan, path=log, now=T0)
    moved = Plan(
        EP, "blue", "green", workspace=WS, state="aborted", current=1, id=saved.id,
        transitions=(
            Transition(T0 + 10, "start", -1, 0, who="alice"),
            Transition(T0 + 200, "abort", 1, 1, reason="too slow", who="alice",
                       verdicts=(verdict,),
                       evidence=(Evidence("blue", live=900), Evidence("green", live=100))),
        ),
    )  # fmt: skip
    start, _ = plan_range(saved, path=log, now=T0 + 400)
    assert start == T0
    html = _html(_report(log, view=_view({"blue": 100}), plan=moved))
    assert f"<title>Plan {saved.id}: green over blue on my-endpoint</title>" in html
    assert "1.80×" in html and "1.50×" in html and "1.80× &gt; 1.50×: slower" in html
    assert "too slow" in html and "retire the baseline" in html


def test_the_file_name_names_the_endpoint_and_the_minute() -> None:
    at = datetime(2026, 12, 2, 3, 51, 30, tzinfo=UTC).timestamp()
    assert report_filename("my-endpoint", at) == "bluegreen-report-my-endpoint-20261202-0351.html"


def test_the_window_starts_at_the_bucket_the_range_starts_in() -> None:
    window = report_window(T0 + 15, T0 + 300, sub_minute=True)
    assert window.start.timestamp() == T0 + 10 and window.granularity.total_seconds() == 10
