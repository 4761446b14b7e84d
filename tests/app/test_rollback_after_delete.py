"""Roll back on the Traffic page after a deployment it would restore traffic to was deleted.

Uses its own endpoint, `rollback-ep`, whose blue this module deletes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components.traffic_editor import EditorKeys, apply_change
from rollout.changes import begin_delete_deployment
from rollout.traffic_change import TrafficState
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "rollback-ep"
BOTH = ("blue", "green")


def test_roll_back_to_a_deleted_deployment_is_not_offered_and_says_why(
    emulator: RunningEmulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(emulator.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path)
    # the tutorial's last two traffic steps, from the dashboard, then blue deleted
    canary = TrafficState.build(ENDPOINT, BOTH, {"blue": 90, "green": 10}, {})
    start = TrafficState.build(ENDPOINT, BOTH, {"blue": 100}, {})
    assert apply_change(workspace, start, canary).kind == "succeeded"
    full = TrafficState.build(ENDPOINT, BOTH, {"green": 100}, {})
    assert apply_change(workspace, canary, full).kind == "succeeded"
    begin_delete_deployment(workspace, ENDPOINT, "blue").result(timeout=120)

    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    app.switch_page("app_pages/traffic.py").run()
    assert not app.exception, app.exception

    keys = EditorKeys.of(workspace.key, ENDPOINT)
    assert app.button(key=keys.rollback).disabled
    captions = "\n".join(c.value for c in app.caption)
    assert "Roll back restores" not in captions
    assert "Roll back is unavailable" in captions
    assert "names deployment 'blue', which the endpoint does not have" in captions
