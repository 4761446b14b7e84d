"""The Traffic page's comparison of candidate with baseline, and its capacity warning, against
a real emulator: defaults, the numbers after traffic, and the warning before 0/100 onto a
one-instance green.

Uses its own endpoint, `evidence-ep` (blue with all live traffic, green at 0%, both from
examples/), so it does not disturb what other tests do with theirs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from components.evidence_panel import PanelKeys
from components.traffic_editor import EditorKeys
from rollout.changes import begin_set_traffic
from rollout.endpoints import get_endpoint, scoring_credential
from rollout.invoke import burst
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "evidence-ep"
SAMPLE = (REPO / "examples" / "sample-request.json").read_bytes()


@pytest.fixture(scope="module")
def evidence_ep(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("evidence-ep"))
    return emulator


@pytest.fixture
def page_env(
    evidence_ep: RunningEmulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Workspace]:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(evidence_ep.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    _set_traffic(workspace, {"blue": 100, "green": 0}, {})
    st.cache_data.clear()  # AppTest runs in this process: no metrics from before
    yield workspace
    _set_traffic(workspace, {"blue": 100, "green": 0}, {})


def _set_traffic(ws: Workspace, traffic: dict[str, int], mirror: dict[str, int]) -> None:
    begin_set_traffic(ws, ENDPOINT, traffic=traffic, mirror=mirror).result(timeout=120)


def _burst(
    ws: Workspace, count: int, *, deployment: str | None = None, concurrency: int = 1
) -> None:
    endpoint = get_endpoint(ws, ENDPOINT)
    result = burst(
        ws,
        endpoint.scoring_uri,
        scoring_credential(ws, ENDPOINT),
        SAMPLE,
        count=count,
        concurrency=concurrency,
        deployment=deployment,
    )
    assert result.statuses[200] == count, result.statuses


def _settle() -> None:
    time.sleep(1.5)  # the emulator writes its request log every half second


def _open() -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    app.switch_page("app_pages/traffic.py").run()
    assert not app.exception, app.exception
    return app


def _markdown(app: AppTest) -> str:
    return "\n".join(m.value for m in app.markdown)


def _warnings(app: AppTest) -> str:
    return "\n".join(str(w.value) for w in app.warning)


def test_the_comparison_defaults_to_the_busiest_as_baseline_and_gives_the_numbers(
    page_env: Workspace,
) -> None:
    _burst(page_env, 40)  # routed: blue has all live traffic
    _burst(page_env, 40, deployment="green")  # green alone, as when it is tested
    _settle()
    app = _open()
    keys = PanelKeys.of(page_env.key, ENDPOINT)
    assert app.selectbox(key=keys.baseline).value == "blue"
    assert app.selectbox(key=keys.candidate).value == "green"
    assert app.selectbox(key=keys.window).value == 0  # since the last traffic change

    (table,) = [d for d in app.dataframe if "deployment" in d.value.columns]
    rows = {r["deployment"]: r for r in table.value.to_dict("records")}
    assert rows["blue"]["requests"] == "40"
    assert rows["green"]["requests"] == "40"
    assert rows["blue"]["live"] == "40" and rows["blue"]["mirrored"] == "0"
    assert rows["green"]["errors"] == "0%"
    assert rows["blue"]["P95"].endswith(" ms")

    text = _markdown(app)
    assert "no evidence of a difference (p = 1, 40 vs 40 requests)" in text
    assert "green's P95 is" in text and "× blue's" in text
    assert "more green requests" in text and "to detect +1.0 pp of errors" in text
    assert any("the last 30 minutes (no traffic change" in c.value for c in app.caption)
    assert rows["green"]["model (424)"] == "0%"  # split by status code: model errors apart

    # A larger degradation to detect needs fewer requests: the estimate follows the control.
    app.number_input(key=keys.degradation).set_value(5.0).run()
    assert not app.exception, app.exception
    text = _markdown(app)
    assert "to detect +5.0 pp of errors" in text and "+1.0 pp" not in text


def test_the_window_defaults_to_since_the_last_traffic_change(page_env: Workspace) -> None:
    _burst(page_env, 30)
    _settle()
    app = _open()
    editor = EditorKeys.of(page_env.key, ENDPOINT)
    app.slider(key=editor.live("blue")).set_value(90)
    app.slider(key=editor.live("green")).set_value(10).run()
    app.button(key=editor.apply).click().run()
    app.button(key="traffic_confirm").click().run()
    assert not app.exception, app.exception

    assert any("since the last traffic change, at" in c.value for c in app.caption)
    (table,) = [d for d in app.dataframe if "deployment" in d.value.columns]
    rows = {r["deployment"]: r for r in table.value.to_dict("records")}
    assert rows["blue"]["requests"] == "0"  # the burst came before the change
    assert "too few requests to compare error rates" in _markdown(app)

    app.selectbox(key=PanelKeys.of(page_env.key, ENDPOINT).window).set_value(15 * 60).run()
    (table,) = [d for d in app.dataframe if "deployment" in d.value.columns]
    rows = {r["deployment"]: r for r in table.value.to_dict("records")}
    assert int(rows["blue"]["requests"].replace(",", "")) >= 30  # the burst is in it again


def test_the_same_deployment_on_both_sides_is_refused_in_words(page_env: Workspace) -> None:
    app = _open()
    app.selectbox(key=PanelKeys.of(page_env.key, ENDPOINT).candidate).set_value("blue").run()
    assert not app.exception, app.exception
    assert "Pick two different deployments to compare." in _warnings(app)


def test_all_live_traffic_onto_a_one_instance_green_warns_of_429s(page_env: Workspace) -> None:
    # 1,200 requests in one minute's bucket, two at a time: about 20/s at a P95 of several
    # ms puts 0.1 or more in flight on green's one slot, over 0.5% refused by M/M/1/2 (300
    # gave 0.04 in flight on a fast machine: 'enough', rightly, since the warning starts at
    # 0.5%)
    _burst(page_env, 1200, concurrency=2)
    _settle()
    app = _open()
    keys = EditorKeys.of(page_env.key, ENDPOINT)
    assert "Green has 1 instance" not in _warnings(app), "no warning before anything moves"
    arm = app.session_state["workspace_reads"][page_env.key].ws.arm_calls.count.requests

    app.button(key=keys.preset(3)).click().run()  # 0/100
    assert not app.exception, app.exception
    warned = _warnings(app)
    # How loud depends on the latency this machine measured (a busy machine's P95 puts more
    # requests in flight): "expect 429s — scale green first" or "close to its limit, bursts
    # may get 429s — consider 2 instances". Either way it names green, 429s and more.
    assert "Green has 1 instance for about" in warned, warned
    assert "429s" in warned and ("scale green first" in warned or "consider" in warned), warned
    reads = app.session_state["workspace_reads"][page_env.key]
    assert reads.ws.arm_calls.count.requests == arm, "the check reads metrics only"

    app.button(key=keys.apply).click().run()
    assert "Green has 1 instance for about" in _warnings(app)  # in the dialog too
    assert app.button(key="traffic_confirm")  # still possible: a warning, not a refusal
