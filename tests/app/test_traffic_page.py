"""The Traffic page against a real emulator: sliders, rules as you move, the dialog, conflicts.

Uses its own endpoint, `traffic-ep` (blue and green, both from examples/), so it does not
disturb what other tests do with `my-endpoint`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components.traffic_editor import EditorKeys, apply_change
from rollout import history
from rollout.changes import begin_set_traffic
from rollout.traffic_change import TrafficState
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "traffic-ep"


@pytest.fixture(scope="module")
def traffic_ep(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("traffic-ep"))
    return emulator


def _set_traffic(ws: Workspace, traffic: dict[str, int], mirror: dict[str, int]) -> None:
    begin_set_traffic(ws, ENDPOINT, traffic=traffic, mirror=mirror).result(timeout=120)


def _traffic(ws: Workspace) -> tuple[dict[str, int], dict[str, int]]:
    entity = ws.ml_client.online_endpoints.get(ENDPOINT)
    live = {k: int(v) for k, v in (entity.traffic or {}).items() if int(v)}
    mirror = {k: int(v) for k, v in (entity.mirror_traffic or {}).items() if int(v)}
    return live, mirror


@pytest.fixture
def page_env(
    traffic_ep: RunningEmulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Workspace]:
    """Blue 100%, no mirror, an empty audit log, and the app pointed at the emulator."""
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(traffic_ep.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    _set_traffic(workspace, {"blue": 100, "green": 0}, {})
    yield workspace


def _open(ws: Workspace) -> tuple[AppTest, EditorKeys]:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    app.switch_page("app_pages/traffic.py").run()
    assert not app.exception, app.exception
    return app, EditorKeys.of(ws.key, ENDPOINT)


def _errors(app: AppTest) -> str:
    return "\n".join(str(e.value) for e in app.error)


def _confirm(app: AppTest, *, reason: str = "") -> None:
    if reason:
        app.text_input(key="traffic_reason").input(reason)
    app.button(key="traffic_confirm").click().run()
    assert not app.exception, app.exception


def test_the_page_starts_from_the_traffic_in_force(page_env: Workspace) -> None:
    app, keys = _open(page_env)
    assert app.slider(key=keys.live("blue")).value == 100
    assert app.slider(key=keys.live("green")).value == 0
    assert app.selectbox(key=keys.mirror_target).value == ""
    assert app.slider(key=keys.mirror_percent).max == 50
    assert len(app.get("plotly_chart")) >= 2
    # nothing to apply yet, and nothing applied from here to roll back
    assert app.button(key=keys.apply).disabled
    assert app.button(key=keys.rollback).disabled
    assert not app.error


def test_a_sum_other_than_100_disables_apply_and_says_why(page_env: Workspace) -> None:
    app, keys = _open(page_env)
    app.slider(key=keys.live("blue")).set_value(90).run()
    assert app.button(key=keys.apply).disabled
    assert "sums to 90; it must be 100 (or 0 to disable traffic)" in _errors(app)
    assert any("90%" in m.value and "Live total" in m.value for m in app.markdown)

    app.slider(key=keys.live("green")).set_value(10).run()
    assert not app.error
    assert not app.button(key=keys.apply).disabled


def test_a_plan_over_100_percent_is_drawn_whole_and_refused_in_words(page_env: Workspace) -> None:
    app, keys = _open(page_env)
    app.slider(key=keys.live("green")).set_value(10).run()
    assert app.button(key=keys.apply).disabled
    assert "sums to 110; it must be 100 (or 0 to disable traffic)" in _errors(app)
    after = next(
        json.loads(c.proto.spec)
        for c in app.get("plotly_chart")
        if f"traffic-after-{keys.scope}" in c.proto.id
    )
    assert after["layout"]["xaxis"]["range"] == [0, 110]
    assert sorted(bar["x"][0] for bar in after["data"]) == [10, 100]


def test_mirror_to_a_live_deployment_disables_apply_and_says_why(page_env: Workspace) -> None:
    app, keys = _open(page_env)
    app.selectbox(key=keys.mirror_target).set_value("blue").run()
    app.slider(key=keys.mirror_percent).set_value(10).run()
    assert app.button(key=keys.apply).disabled
    assert "'blue' of endpoint 'traffic-ep' has 100% live traffic" in _errors(app)

    app.selectbox(key=keys.mirror_target).set_value("green").run()
    assert not app.error
    assert not app.button(key=keys.apply).disabled


def test_the_mirror_slider_says_why_it_stops_at_50_percent(page_env: Workspace) -> None:
    app, keys = _open(page_env)
    assert app.slider(key=keys.mirror_percent).max == 50
    captions = "\n".join(c.value for c in app.caption)
    assert "Azure caps mirror traffic at 50% of live requests" in captions


def test_presets_and_give_the_rest_move_the_sliders(page_env: Workspace) -> None:
    app, keys = _open(page_env)
    app.button(key=keys.preset(2)).click().run()  # 50/50
    assert app.slider(key=keys.live("blue")).value == 50
    assert app.slider(key=keys.live("green")).value == 50

    app.slider(key=keys.live("blue")).set_value(30).run()
    app.button(key=keys.rest("green")).click().run()
    assert app.slider(key=keys.live("green")).value == 70
    assert not app.error


def test_a_valid_change_is_confirmed_in_the_dialog_and_read_back(page_env: Workspace) -> None:
    app, keys = _open(page_env)
    app.slider(key=keys.live("blue")).set_value(90)
    app.slider(key=keys.live("green")).set_value(10).run()
    app.button(key=keys.apply).click().run()

    table = app.table[0].value
    rows = {r["deployment"]: r["live"] for r in table.to_dict("records")}
    assert rows == {"blue": "100% → 90%", "green": "0% → 10%"}
    assert _traffic(page_env) == ({"blue": 100}, {}), "nothing is sent before Confirm"

    _confirm(app, reason="canary 10%")
    assert _traffic(page_env) == ({"blue": 90, "green": 10}, {})
    assert any("now live blue 90%, green 10%" in s.value for s in app.success)
    assert app.slider(key=keys.live("blue")).value == 90
    assert app.slider(key=keys.live("green")).value == 10
    assert app.button(key=keys.apply).disabled
    assert not app.button(key=keys.rollback).disabled

    (change,) = history.list_changes(workspace=page_env.key, endpoint=ENDPOINT)
    assert change.action == "traffic"
    assert change.outcome == "Succeeded"
    assert change.reason == "canary 10%"
    assert change.before["traffic"] == {"blue": 100, "green": 0}
    assert change.after["traffic"] == {"blue": 90, "green": 10}


def test_roll_back_restores_the_traffic_before_the_last_change(page_env: Workspace) -> None:
    app, keys = _open(page_env)
    app.selectbox(key=keys.mirror_target).set_value("green").run()
    app.slider(key=keys.mirror_percent).set_value(20).run()
    app.button(key=keys.apply).click().run()
    _confirm(app)
    assert _traffic(page_env) == ({"blue": 100}, {"green": 20})

    app.button(key=keys.rollback).click().run()
    rows = {r["deployment"]: r["mirror"] for r in app.table[0].value.to_dict("records")}
    assert rows == {"green": "20% → 0%"}
    _confirm(app)
    assert _traffic(page_env) == ({"blue": 100}, {})
    assert app.selectbox(key=keys.mirror_target).value == ""
    outcomes = [c.outcome for c in history.list_changes(workspace=page_env.key, endpoint=ENDPOINT)]
    assert outcomes == ["Succeeded", "Succeeded"]


def test_a_change_made_elsewhere_since_the_page_loaded_is_not_overwritten(
    page_env: Workspace,
) -> None:
    app, keys = _open(page_env)
    _set_traffic(page_env, {"blue": 50, "green": 50}, {})  # someone else, through the SDK

    # The sliders rerun the page from what it read (no round trip), so it cannot know yet;
    # Apply reads the endpoint fresh before sending.
    app.slider(key=keys.live("blue")).set_value(90)
    app.slider(key=keys.live("green")).set_value(10).run()
    app.button(key=keys.apply).click().run()
    _confirm(app)

    assert _traffic(page_env) == ({"blue": 50, "green": 50}, {})
    warnings = "\n".join(w.value for w in app.warning)
    assert "Not applied" in warnings
    assert "it is now live blue 50%, green 50%" in warnings
    # the page now edits from the new state, keeping what the user asked for
    assert app.slider(key=keys.live("blue")).value == 90
    assert not any("you are editing from" in w.value for w in app.warning)
    (change,) = history.list_changes(workspace=page_env.key, endpoint=ENDPOINT)
    assert change.outcome.startswith("Failed: the traffic of 'traffic-ep' changed")


def test_read_only_mode_disables_every_change_and_says_why(
    page_env: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEGREEN_READ_ONLY", "1")
    app, keys = _open(page_env)
    controls = [
        app.slider(key=keys.live("blue")),
        app.slider(key=keys.live("green")),
        app.slider(key=keys.mirror_percent),
        app.selectbox(key=keys.mirror_target),
        app.button(key=keys.apply),
        app.button(key=keys.rollback),
        app.button(key=keys.preset(0)),
        app.button(key=keys.rest("green")),
    ]
    assert all(c.disabled for c in controls)
    assert any("Read-only mode is on" in i.value for i in app.info)


def test_a_refused_change_says_so_and_that_the_old_traffic_is_in_force(
    page_env: Workspace,
) -> None:
    before = TrafficState.build(ENDPOINT, ["blue", "green"], {"blue": 100}, {})
    after = TrafficState.build(ENDPOINT, ["blue", "green"], {"blue": 100}, {"green": 60})
    outcome = apply_change(page_env, before, after, reason="too much")
    assert outcome.kind == "failed"
    assert "at most 50 percent of traffic can be mirrored" in outcome.message
    assert "still live blue 100% · mirror none" in outcome.message
    assert _traffic(page_env) == ({"blue": 100}, {})
    (change,) = history.list_changes(workspace=page_env.key, endpoint=ENDPOINT)
    assert change.outcome.startswith("Failed: ")
