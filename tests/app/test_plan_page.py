"""The Rollout page against a real emulator: create a plan, Start, Promote (gates or an
override with a reason), Abort back to the baseline, Retire the baseline, and a plan that
outlives the session that made it.

Uses its own endpoints, `plan-ep` and `retire-ep` (blue with all live traffic, green at 0%,
both from examples/); retire-ep loses blue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rollout import history, plan_store, promotion
from rollout.changes import begin_set_traffic
from rollout.gates import Gates
from rollout.promotion import Plan, Step
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "plan-ep"


@pytest.fixture(scope="module")
def plan_ep(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("plan-ep"))
    return emulator


@pytest.fixture
def page_env(
    plan_ep: RunningEmulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Workspace]:
    """Blue 100%, no mirror, an empty store, and the app pointed at the emulator."""
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(plan_ep.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    _set_traffic(workspace, ENDPOINT, {"blue": 100, "green": 0}, {})
    st.cache_data.clear()
    yield workspace
    _set_traffic(workspace, ENDPOINT, {"blue": 100, "green": 0}, {})


def _set_traffic(
    ws: Workspace, endpoint: str, traffic: dict[str, int], mirror: dict[str, int]
) -> None:
    begin_set_traffic(ws, endpoint, traffic=traffic, mirror=mirror).result(timeout=120)


def _traffic(ws: Workspace, endpoint: str = ENDPOINT) -> tuple[dict[str, int], dict[str, int]]:
    entity = ws.ml_client.online_endpoints.get(endpoint)
    live = {k: int(v) for k, v in (entity.traffic or {}).items() if int(v)}
    mirror = {k: int(v) for k, v in (entity.mirror_traffic or {}).items() if int(v)}
    return live, mirror


def _open(endpoint: str = ENDPOINT) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = endpoint
    app.run()
    app.switch_page("app_pages/plan.py").run()
    assert not app.exception, app.exception
    return app


def _text(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [c.value for c in app.caption]
    parts += [str(s.value) for s in app.subheader] + [str(s.value) for s in app.success]
    return "\n".join(parts)


def _confirm(app: AppTest, *, reason: str = "") -> None:
    if reason:
        app.text_input(key="plan_reason").input(reason)
    app.button(key="plan_confirm").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]


def _saved_plan(ws: Workspace, *, started: bool = False) -> Plan:
    plan = plan_store.save_plan(Plan(ENDPOINT, "blue", "green", workspace=ws.key))
    if started:
        _set_traffic(ws, ENDPOINT, {"blue": 100, "green": 0}, {"green": 10})
        plan = plan_store.save_plan(promotion.start(plan, now=time.time()))
    return plan


def test_a_plan_is_created_with_the_default_steps_and_outlives_the_session(
    page_env: Workspace,
) -> None:
    app = _open()
    assert app.selectbox(key="plan_baseline").value == "blue"
    assert app.selectbox(key="plan_candidate").value == "green"
    app.button(key="plan_create").click().run()
    assert not app.exception, app.exception
    assert "created: green over blue in 5 steps" in _text(app)

    plan = plan_store.active_plan(page_env.key, ENDPOINT)
    assert plan is not None and plan.state == "ready"
    assert [s.label for s in plan.steps] == [
        "mirror 10%", "live 10%", "live 50%", "live 100%", "retire the baseline",
    ]  # fmt: skip
    assert _traffic(page_env) == ({"blue": 100}, {}), "creating a plan moves no traffic"

    again = _open()  # a new session, as after a restart of the dashboard
    assert f"Plan {plan.id}: green over blue" in _text(again)
    assert "1. mirror 10%" in _text(again)
    assert not again.button(key="plan_start").disabled


def test_start_then_promote_applies_the_next_step_and_records_it(page_env: Workspace) -> None:
    plan = _saved_plan(page_env)
    app = _open()
    app.button(key="plan_start").click().run()
    assert "After: live blue 100% · mirror green 10%" in _text(app)
    _confirm(app)
    assert _traffic(page_env) == ({"blue": 100}, {"green": 10})
    assert "step 1 of 5 (mirror 10%)" in _text(app)

    # Nothing was served in the step yet: the gates lack evidence, Promote needs a reason.
    assert "not enough evidence" in _text(app)
    assert app.button(key="plan_promote").disabled
    app.text_input(key=f"plan_override_{plan.id}_0").input("demo: promote on the sample").run()
    assert not app.button(key="plan_promote").disabled
    app.button(key="plan_promote").click().run()
    assert "After: live blue 90%, green 10% · mirror none" in _text(app)
    _confirm(app)

    assert _traffic(page_env) == ({"blue": 90, "green": 10}, {})
    moved = plan_store.active_plan(page_env.key, ENDPOINT)
    assert moved is not None and moved.current == 1
    assert moved.transitions[-1].reason == "demo: promote on the sample"
    assert {v.status for v in moved.transitions[-1].verdicts} >= {"not enough evidence"}
    actions = [c.action for c in history.list_changes(workspace=page_env.key, endpoint=ENDPOINT)]
    assert actions.count("traffic") == 2
    assert "plan start" in actions and "plan promote" in actions
    assert "step 2 of 5 (live 10%)" in _text(app)
    # the reason overrode step 1's gates, not step 2's: it asks for one of its own
    assert app.text_input(key=f"plan_override_{plan.id}_1").value == ""
    assert app.button(key="plan_promote").disabled


def test_abort_restores_the_baseline_and_stops_mirroring(page_env: Workspace) -> None:
    _saved_plan(page_env, started=True)
    app = _open()
    app.button(key="plan_abort").click().run()
    assert "After: live blue 100% · mirror none" in _text(app)
    _confirm(app, reason="green looks wrong")

    assert _traffic(page_env) == ({"blue": 100}, {})
    assert plan_store.active_plan(page_env.key, ENDPOINT) is None
    (last,) = plan_store.list_plans(page_env.key, ENDPOINT)
    assert last.state == "aborted" and last.transitions[-1].reason == "green looks wrong"
    assert app.button(key="plan_create"), "the page offers a new plan"
    changes = history.list_changes(workspace=page_env.key, endpoint=ENDPOINT)
    assert [c.action for c in changes][-2:] == ["traffic", "plan abort"]


def test_retire_deletes_the_baseline_after_the_candidate_had_all_traffic(
    emulator: RunningEmulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    endpoint = "retire-ep"
    (tmp_path / "seed").mkdir()
    seed_tutorial_endpoint(emulator, endpoint, tmp_path / "seed")
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(emulator.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    st.cache_data.clear()
    _set_traffic(workspace, endpoint, {"blue": 0, "green": 100}, {})
    quick = Gates(min_requests=1)
    steps = (Step("live", 100, 0.0, quick), Step("retire", 0, 0.0))
    plan = Plan(endpoint, "blue", "green", steps, workspace=workspace.key)
    plan_store.save_plan(promotion.start(plan_store.save_plan(plan), now=time.time()))

    started = plan_store.active_plan(workspace.key, endpoint)
    assert started is not None
    app = _open(endpoint)
    app.text_input(key=f"plan_override_{started.id}_0").input("green served the demo").run()
    app.button(key="plan_promote").click().run()
    _confirm(app)
    assert "step 2 of 2 (retire the baseline)" in _text(app)

    app.button(key="plan_retire").click().run()
    assert "Deletes deployment **blue**" in _text(app)
    _confirm(app)
    names = [d.name for d in workspace.ml_client.online_deployments.list(endpoint)]
    assert names == ["green"]
    (last,) = plan_store.list_plans(workspace.key, endpoint)
    assert last.state == "retired"
    actions = [c.action for c in history.list_changes(workspace=workspace.key, endpoint=endpoint)]
    assert actions[-2:] == ["delete", "plan retire"]


def test_a_plan_moved_in_another_session_is_not_moved_again(page_env: Workspace) -> None:
    _saved_plan(page_env)
    first, second = _open(), _open()
    first.button(key="plan_start").click().run()
    second.button(key="plan_start").click().run()
    _confirm(first)
    assert _traffic(page_env) == ({"blue": 100}, {"green": 10})

    second.button(key="plan_confirm").click().run()
    assert not second.exception, second.exception
    errors = "\n".join(e.value for e in second.error)
    assert "was moved in another session (it is now step 1 of 5 (mirror 10%))" in errors
    moved = plan_store.active_plan(page_env.key, ENDPOINT)
    assert moved is not None and [t.action for t in moved.transitions] == ["start"]


def test_read_only_mode_offers_no_plan_changes(
    page_env: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saved_plan(page_env, started=True)
    monkeypatch.setenv("BLUEGREEN_READ_ONLY", "1")
    app = _open()
    assert app.button(key="plan_abort").disabled
    assert app.button(key="plan_promote").disabled


def test_the_plans_review_report_is_built_when_asked_and_offered_to_download(
    page_env: Workspace,
) -> None:
    plan = _saved_plan(page_env, started=True)
    app = _open()
    assert not app.get("download_button")  # nothing is read before it is asked for
    app.button(key="plan_report_build").click().run()
    assert not app.exception, app.exception
    (download,) = app.get("download_button")
    assert download.label.startswith(f"Download bluegreen-report-{ENDPOINT}-")
    html = app.session_state["report_built"].html
    assert f"<title>Plan {plan.id}: green over blue on {ENDPOINT}</title>" in html
    assert "mirror 10%" in html and "plan start" in html
