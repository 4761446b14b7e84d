"""The Metrics page against a real emulator: controls, the charts after traffic, the mirror's
own series, change markers, and the traffic generator.

Uses its own endpoint, `metrics-ep` (blue with all live traffic, green at 0%, both from
examples/), so it does not disturb what other tests do with theirs. The charts read the
emulator's Azure Monitor batch API (`metrics:getBatch`) through the real MetricsClient.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from components.traffic_generator import Plan, Progress, TrafficRun, summary
from rollout import history
from rollout.changes import begin_set_traffic
from rollout.endpoints import get_endpoint, scoring_credential
from rollout.invoke import burst
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "metrics-ep"
SAMPLE = (REPO / "examples" / "sample-request.json").read_bytes()


@pytest.fixture(scope="module")
def metrics_ep(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("metrics-ep"))
    return emulator


@pytest.fixture
def page_env(
    metrics_ep: RunningEmulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Workspace]:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(metrics_ep.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    _set_traffic(workspace, {"blue": 100, "green": 0}, {})
    st.cache_data.clear()  # AppTest runs in this process: no endpoint or metrics from before
    yield workspace
    _set_traffic(workspace, {"blue": 100, "green": 0}, {})


def _set_traffic(ws: Workspace, traffic: dict[str, int], mirror: dict[str, int]) -> None:
    begin_set_traffic(ws, ENDPOINT, traffic=traffic, mirror=mirror).result(timeout=120)


def _burst(ws: Workspace, count: int) -> None:
    endpoint = get_endpoint(ws, ENDPOINT)
    result = burst(
        ws,
        endpoint.scoring_uri,
        scoring_credential(ws, ENDPOINT),
        SAMPLE,
        count=count,
        concurrency=1,
    )
    assert result.statuses[200] == count, result.statuses
    time.sleep(1.5)  # the emulator writes its request log every half second


def _open() -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    app.switch_page("app_pages/metrics.py").run()
    assert not app.exception, app.exception
    return app


def _charts(app: AppTest) -> dict[str, dict[str, Any]]:
    """The page's plotly figures as JSON, by title."""
    figures = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    return {f["layout"]["title"]["text"]: f for f in figures}


SO_FAR = " (so far)"


def _series(figure: dict[str, Any]) -> dict[str, float]:
    """Each trace's name and the sum of its y values. A "… (so far)" trace (the segment into
    the unfinished last bucket, from the last finished point) adds its last point to its
    series."""
    sums: dict[str, float] = {}
    for trace in figure["data"]:
        name, ys = trace["name"], [v for v in _ys(trace) if v is not None]
        if name.endswith(SO_FAR):
            name, ys = name.removesuffix(SO_FAR), ys[-1:]
        sums[name] = sums.get(name, 0.0) + sum(ys)
    return sums


def _ys(trace: dict[str, Any]) -> list[float]:
    y = trace.get("y", [])
    if isinstance(y, dict):  # plotly's typed-array encoding
        import base64

        import numpy as np

        return list(np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]))
    return list(y)


def _texts(figure: dict[str, Any]) -> list[str]:
    return [a.get("text", "") for a in figure["layout"].get("annotations", [])]


def _markdown(app: AppTest) -> str:
    return "\n".join(m.value for m in app.markdown)


def test_the_controls_offer_ranges_ten_second_buckets_and_a_pausable_refresh(
    page_env: Workspace,
) -> None:
    app = _open()
    span = app.selectbox(key="metrics_span")
    assert span.value == 15 * 60
    assert span.options[0] == "15 minutes"
    assert span.options[-1] == "7 days"
    grain = app.selectbox(key="metrics_grain_900")
    assert grain.options[0] == "PT10S"  # the emulator has ten-second buckets
    refresh = app.selectbox(key="metrics_refresh")
    assert "Paused" in refresh.options
    assert refresh.value == 10
    refresh.set_value(None).run()
    assert not app.exception, app.exception
    assert any("live refresh paused" in c.value for c in app.caption)


def test_after_traffic_the_page_shows_each_deployments_series(page_env: Workspace) -> None:
    _burst(page_env, 30)
    endpoint = get_endpoint(page_env, ENDPOINT)
    # green alone, as when it is tested before taking live traffic
    burst(
        page_env,
        endpoint.scoring_uri,
        scoring_credential(page_env, ENDPOINT),
        SAMPLE,
        count=5,
        concurrency=1,
        deployment="green",
    )
    time.sleep(1.5)
    app = _open()
    assert not app.error, [e.value for e in app.error]
    charts = _charts(app)
    assert set(charts) == {
        "Requests per minute",
        "Latency by deployment",
        "Errors by status class",
        "Instances",
    }
    requests = _series(charts["Requests per minute"])
    assert requests.get("blue", 0) > 0, requests
    assert requests.get("green", 0) > 0, requests
    latency = {t["name"] for t in charts["Latency by deployment"]["data"]}
    assert {"blue", "green"} <= latency
    assert (
        any("No errors in this window" in t for t in _texts(charts["Errors by status class"]))
        or _series(charts["Errors by status class"]) == {}
    )


def test_mirrored_requests_are_drawn_apart_and_said_so(page_env: Workspace) -> None:
    _set_traffic(page_env, {"blue": 100, "green": 0}, {"green": 50})
    _burst(page_env, 40)
    app = _open()
    figure = _charts(app)["Requests per minute"]
    requests = _series(figure)
    assert requests.get("blue", 0) > 0, requests
    assert requests.get("green (mirror)", 0) > 0, requests
    trace = next(t for t in figure["data"] if t["name"] == "green (mirror)")
    assert trace["line"]["dash"] == "dash"
    words = _markdown(app)
    assert "Mirrored requests are told apart" in words
    assert "Mirroring now: green (50%)" in words


def test_changes_made_from_the_dashboard_are_marked_on_the_charts(page_env: Workspace) -> None:
    history.record(
        workspace=page_env.key,
        endpoint=ENDPOINT,
        action="traffic",
        before={"traffic": {"blue": 100, "green": 0}, "mirror": {}},
        after={"traffic": {"blue": 100, "green": 0}, "mirror": {"green": 10}},
        who="ana",
    )
    app = _open()
    requests = _charts(app)["Requests per minute"]
    assert "mirror green 10%" in _texts(requests)
    assert [s for s in requests["layout"]["shapes"] if s.get("name") == "marker:mirror"]


def test_the_traffic_generator_sends_the_sample_request_at_the_chosen_rate(
    page_env: Workspace,
) -> None:
    app = _open()
    app.number_input(key="traffic_rate").set_value(10)
    app.number_input(key="traffic_duration").set_value(5)
    app.button(key="traffic_start").click().run()
    assert not app.exception, app.exception
    run = app.session_state["traffic_generator_run"]
    assert isinstance(run, TrafficRun)
    assert app.button(key="traffic_stop")  # while it runs, Start becomes Stop
    assert run.wait(timeout=60)
    progress = run.progress()
    assert progress.sent == 50
    assert progress.statuses == {200: 50}
    assert 4.0 <= progress.elapsed <= 15.0  # spaced over the duration, not one burst
    app.run()
    assert not app.exception, app.exception
    assert any("Sent 50 requests" in s.value for s in app.success), [s.value for s in app.success]


def test_the_traffic_generator_shows_its_runs_plan_after_leaving_the_page_and_coming_back(
    page_env: Workspace,
) -> None:
    app = _open()
    app.number_input(key="traffic_rate").set_value(2)
    app.number_input(key="traffic_duration").set_value(30)
    app.button(key="traffic_start").click().run()
    run = app.session_state["traffic_generator_run"]
    assert isinstance(run, TrafficRun)
    try:
        app.switch_page("app_pages/endpoints.py").run()
        app.switch_page("app_pages/metrics.py").run()
        assert not app.exception, app.exception
        assert run.running
        assert app.number_input(key="traffic_rate").value == 2
        assert app.number_input(key="traffic_duration").value == 30
        captions = [c.value for c in app.caption]
        assert any("60 requests (2/s for 30 s)" in c for c in captions), captions
    finally:
        run.stop()
        assert run.wait(timeout=60)
    # after the run, the inputs keep the last choice across pages too
    app.switch_page("app_pages/endpoints.py").run()
    app.switch_page("app_pages/metrics.py").run()
    assert app.number_input(key="traffic_rate").value == 2
    assert not app.number_input(key="traffic_rate").disabled


def test_the_traffic_generator_says_why_it_cannot_send(page_env: Workspace) -> None:
    _set_traffic(page_env, {"blue": 0, "green": 0}, {})
    app = _open()
    app.button(key="traffic_start").click().run()
    assert not app.exception, app.exception
    assert any("No traffic was sent" in e.value and "404" in e.value for e in app.error)
    assert "traffic_generator_run" not in app.session_state


def test_the_script_run_with_data_cached_is_fast(page_env: Workspace) -> None:
    app = _open()
    app.run()  # caches warm
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        app.run()
        timings.append(time.perf_counter() - started)
    assert not app.exception, app.exception
    assert min(timings) < 0.3, timings


def _generator_as_on_azure(facts: dict[str, object], endpoint: str) -> None:
    """The traffic generator on a workspace that says it is Azure (it is the emulator)."""
    import dataclasses

    from components.traffic_generator import traffic_generator
    from rollout.endpoints import get_endpoint
    from rollout.workspace import EmulatorFacts, connect_emulator

    ws = dataclasses.replace(
        connect_emulator(facts=EmulatorFacts.from_json(facts)), kind="azure", metrics_url=None
    )
    traffic_generator(ws, get_endpoint(ws, endpoint))


def _azure_app(emulator: RunningEmulator) -> AppTest:
    assert emulator.facts is not None
    app = AppTest.from_function(
        _generator_as_on_azure,
        default_timeout=60,
        kwargs={"facts": dataclasses.asdict(emulator.facts), "endpoint": ENDPOINT},
    )
    app.run()
    assert not app.exception, app.exception
    return app


def test_on_azure_generated_traffic_is_confirmed_first(
    page_env: Workspace, metrics_ep: RunningEmulator
) -> None:
    app = _azure_app(metrics_ep)
    app.number_input(key="traffic_rate").set_value(5)
    app.number_input(key="traffic_duration").set_value(5)
    app.button(key="traffic_start").click().run()
    assert not app.exception, app.exception
    assert "traffic_generator_run" not in app.session_state  # nothing sent yet
    words = _markdown(app)
    assert "This sends **25 requests**" in words
    assert "on Azure" in words and "billed" in words

    app.button(key="traffic_cancel").click().run()
    assert "traffic_generator_run" not in app.session_state
    assert "traffic_generator_pending" not in app.session_state

    app.button(key="traffic_start").click().run()
    app.button(key="traffic_confirm").click().run()
    assert not app.exception, app.exception
    run = app.session_state["traffic_generator_run"]
    assert run.wait(timeout=60)
    assert run.progress().statuses == {200: 25}


def test_read_only_mode_still_allows_generating_traffic(
    page_env: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEGREEN_READ_ONLY", "1")
    app = _open()
    assert not app.button(key="traffic_start").disabled
    assert any("Allowed in read-only mode" in c.value for c in app.caption)


def test_a_week_at_a_coarser_granularity_renders_every_chart(page_env: Workspace) -> None:
    app = _open()
    app.selectbox(key="metrics_span").set_value(7 * 86400).run()
    assert not app.exception, app.exception
    grain = app.selectbox(key=f"metrics_grain_{7 * 86400}")
    assert grain.options[0] == "PT15M"
    assert "PT10S" not in grain.options and "PT1M" not in grain.options
    assert grain.value == 1800  # PT30M: 336 buckets
    assert not app.error, [e.value for e in app.error]
    assert len(_charts(app)) == 4
    assert any("last 7 days at PT30M" in c.value for c in app.caption)


def test_the_generator_is_bounded() -> None:
    assert Plan("e", 50, 120).problems() == []
    assert Plan("e", 51, 10).problems() == ["the rate is 1 to 50 requests per second"]
    assert Plan("e", 5, 121).problems() == ["the duration is 5 to 120 seconds"]
    assert Plan("e", 5, 60).total == 300


def test_the_generator_says_what_happened_in_words() -> None:
    progress = Progress(
        plan=Plan("e", 5, 20),
        elapsed=20.0,
        sent=100,
        answered=100,
        skipped=0,
        statuses={200: 91, 429: 9},
        served={"blue": 100},
        done=True,
        stopped=False,
        error=None,
    )
    assert summary(progress) == (
        "Sent 100 requests in 20 s (5.0/s): 91 × 200, 9 × 429; answered by blue 100. "
        "429: too many requests were pending on a deployment; scale it out or lower the rate."
    )
