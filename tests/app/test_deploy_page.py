"""The Deploy page against a real emulator: create an endpoint, add a deployment from a YAML
or like an existing one (0% live), a failure shown with its logs, delete an endpoint,
read-only mode; every change confirmed in a dialog and written to the audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rollout import deploy, history
from rollout.changes import begin_delete_deployment
from rollout.endpoints import get_endpoint, list_endpoint_heads
from rollout.workspace import Workspace
from tests.conftest import EXAMPLES, REPO, RunningEmulator, example_yaml

pytestmark = pytest.mark.emulator

ENDPOINT = "deploy-page-ep"
SLOW_RUN = 300  # seconds: a deployment starts an instance process, on a busy 2-core machine
INIT_FAILS = REPO / "tests" / "emulator" / "fixtures" / "init_fails"


@pytest.fixture(scope="module")
def seeded(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> RunningEmulator:
    """`deploy-page-ep` with blue (model-1) taking all live traffic."""
    from emulator.apply import apply_file

    folder = tmp_path_factory.mktemp("deploy-page-yaml")
    apply_file(emulator.state_dir, example_yaml("endpoint", folder, name=ENDPOINT), if_missing=True)
    blue = example_yaml("blue-deployment", folder, endpoint_name=ENDPOINT)
    apply_file(emulator.state_dir, blue, all_traffic=True, if_missing=True)
    return emulator


@pytest.fixture
def audit_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "bluegreen"))
    return tmp_path / "bluegreen" / "history.db"


def _page(state_dir: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str = ENDPOINT) -> AppTest:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(state_dir))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.switch_page("app_pages/deploy.py")
    app.query_params["endpoint"] = endpoint
    app.run()
    assert not app.exception, app.exception
    return app


@pytest.fixture
def page(seeded: RunningEmulator, audit_log: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    return _page(seeded.state_dir, monkeypatch)


def _ok(app: AppTest) -> AppTest:
    assert not app.exception, app.exception
    return app


def _errors(app: AppTest) -> str:
    return "\n".join(e.value for e in app.error)


def _changes(ws: Workspace, endpoint: str, audit_log: Path) -> list[history.Change]:
    return history.list_changes(workspace=ws.key, endpoint=endpoint, path=audit_log)


def _arm_requests(app: AppTest) -> int:
    (reads,) = app.session_state["workspace_reads"].values()
    return int(reads.ws.arm_calls.count.requests)


def test_the_endpoint_name_is_checked_as_it_is_typed_and_typing_sends_nothing(
    page: AppTest,
) -> None:
    before = _arm_requests(page)
    _ok(page.text_input(key="new_endpoint_name").input("9-lives--").run())
    assert "must start with a letter" in _errors(page)
    assert "dashes must be single" in _errors(page)
    assert page.button(key="new_endpoint_open").disabled
    _ok(page.text_input(key="new_endpoint_name").input(ENDPOINT.upper()).run())
    assert "already exists in this workspace" in _errors(page)
    assert page.button(key="new_endpoint_open").disabled
    _ok(page.text_input(key="new_endpoint_name").input("fresh-name").run())
    assert not _errors(page)
    assert any("valid name" in c.value for c in page.caption)
    assert not page.button(key="new_endpoint_open").disabled
    assert _arm_requests(page) == before


def test_creating_an_endpoint_is_confirmed_recorded_and_selects_it(
    page: AppTest, workspace: Workspace, audit_log: Path
) -> None:
    name = "page-made-ep"
    page.text_input(key="new_endpoint_name").input(name)
    page.radio(key="new_endpoint_auth").set_value("aml_token")
    page.text_area(key="new_endpoint_description").input("made on the Deploy page")
    _ok(page.run())
    _ok(page.button(key="new_endpoint_open").click().run())
    table = page.table[0].value
    assert name in table.loc["endpoints", "after"]
    assert name not in table.loc["endpoints", "before"]
    assert table.loc["auth mode", "after"] == "AML token"
    page.text_input(key="new_endpoint_reason").input("a home for the candidate")
    _ok(page.button(key="new_endpoint_confirm").click().run(timeout=SLOW_RUN))
    assert any(f"Endpoint '{name}' was created" in s.value for s in page.success), page.success
    entity = workspace.ml_client.online_endpoints.get(name)
    assert entity.auth_mode.lower() == "aml_token"
    assert entity.description == "made on the Deploy page"
    assert page.selectbox(key="selected_endpoint_box").value == name
    [change] = _changes(workspace, name, audit_log)
    assert (change.action, change.reason, change.outcome) == (
        "create_endpoint",
        "a home for the candidate",
        "Succeeded",
    )
    assert change.after == {
        "endpoint": name,
        "auth_mode": "aml_token",
        "description": "made on the Deploy page",
    }


def test_a_deployment_from_the_green_yaml_under_another_name_starts_at_0_percent(
    page: AppTest, workspace: Workspace, audit_log: Path
) -> None:
    page.text_input(key="new_deployment_yaml_path").input(str(EXAMPLES / "green-deployment.yml"))
    page.text_input(key="new_deployment_yaml_name").input("green-page")
    _ok(page.run())
    summary = page.table[0].value
    assert summary.loc["deployment", "value"] == "green-page"
    assert summary.loc["model", "value"].startswith("model-2 from ")
    _ok(page.button(key="new_deployment_yaml_open").click().run())
    table = page.table[-1].value
    assert table.loc["deployments", "before"] == "blue"
    assert table.loc["deployments", "after"] == "blue, green-page"
    assert table.loc["green-page: live traffic", "after"] == "0%"
    _ok(page.button(key="new_deployment_confirm").click().run(timeout=SLOW_RUN))
    assert any("'green-page'" in s.value and "0% live" in s.value for s in page.success)
    view = get_endpoint(workspace, ENDPOINT)
    shares = {d.name: (d.state, d.live) for d in view.deployments}
    assert shares == {"blue": ("Succeeded", 100), "green-page": ("Succeeded", 0)}
    [change] = _changes(workspace, ENDPOINT, audit_log)
    assert (change.action, change.outcome) == ("create_deployment", "Succeeded")
    assert change.before == {"deployments": ["blue"]}
    assert change.after["deployment"] == "green-page"
    assert change.after["live"] == 0


def test_a_new_version_like_blue_with_the_model_2_folder(
    page: AppTest, workspace: Workspace, audit_log: Path
) -> None:
    _ok(page.radio(key="new_deployment_from").set_value("like").run())
    page.selectbox(key=f"new_deployment_like_{ENDPOINT}").set_value("blue")
    page.text_input(key="new_deployment_like_name").input("blue-v2")
    _ok(page.radio(key="new_deployment_like_model").set_value("folder").run())
    page.text_input(key="new_deployment_like_mpath").input(str(EXAMPLES / "model-2" / "model"))
    page.text_input(key="new_deployment_like_mreg").input("model-2")
    _ok(page.run())
    assert not _errors(page)
    _ok(page.button(key="new_deployment_like_open").click().run())
    table = page.table[-1].value
    assert table.loc["blue-v2: model", "before"] == "blue: model-1:1"
    assert table.loc["blue-v2: model", "after"].startswith("model-2 from ")
    _ok(page.button(key="new_deployment_confirm").click().run(timeout=SLOW_RUN))
    assert any("'blue-v2'" in s.value for s in page.success), (page.success, _errors(page))
    v2 = next(d for d in get_endpoint(workspace, ENDPOINT).deployments if d.name == "blue-v2")
    assert (v2.state, v2.live, v2.model.split(":")[0]) == ("Succeeded", 0, "model-2")
    [change] = _changes(workspace, ENDPOINT, audit_log)
    assert (change.action, change.after["like"], change.outcome) == (
        "create_deployment",
        "blue",
        "Succeeded",
    )


def test_like_this_one_with_a_folder_that_does_not_exist_is_refused_in_words(
    page: AppTest,
) -> None:
    _ok(page.radio(key="new_deployment_from").set_value("like").run())
    page.text_input(key="new_deployment_like_name").input("blue")
    _ok(page.radio(key="new_deployment_like_model").set_value("folder").run())
    _ok(page.text_input(key="new_deployment_like_mpath").input("/no/such/model").run())
    assert "'blue' already exists" in _errors(page)
    assert "the model folder /no/such/model does not exist" in _errors(page)
    assert page.button(key="new_deployment_like_open").disabled


def test_like_this_one_with_0_instances_is_refused_in_words_not_clamped(page: AppTest) -> None:
    _ok(page.radio(key="new_deployment_from").set_value("like").run())
    page.selectbox(key=f"new_deployment_like_{ENDPOINT}").set_value("blue")
    page.text_input(key="new_deployment_like_name").input("blue-zero")
    _ok(page.number_input(key="new_deployment_like_count_blue").set_value(0).run())
    assert page.number_input(key="new_deployment_like_count_blue").value == 0
    assert "is 0; it must be a whole number from 1 to 50" in _errors(page)
    assert page.button(key="new_deployment_like_open").disabled


def test_a_deployment_that_fails_shows_the_reason_and_its_logs_in_the_dialog(
    page: AppTest, workspace: Workspace, audit_log: Path
) -> None:
    _ok(page.radio(key="new_deployment_from").set_value("like").run())
    page.text_input(key="new_deployment_like_name").input("broken")
    _ok(page.checkbox(key="new_deployment_like_code_on").check().run())
    _ok(page.text_input(key="new_deployment_like_code").input(str(INIT_FAILS)).run())
    _ok(page.button(key="new_deployment_like_open").click().run())
    _ok(page.button(key="new_deployment_confirm").click().run(timeout=SLOW_RUN))
    assert "creating deployment 'broken'" in _errors(page), _errors(page)
    logs = "\n".join(c.value for c in page.code)
    assert "sklearn_regression_model.pkl is missing" in logs
    [change] = _changes(workspace, ENDPOINT, audit_log)
    assert change.outcome.startswith("Failed: ")
    begin_delete_deployment(workspace, ENDPOINT, "broken").result(timeout=SLOW_RUN)


def test_deleting_an_endpoint_needs_its_name_typed_and_is_recorded(
    seeded: RunningEmulator,
    workspace: Workspace,
    audit_log: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    name = "page-doomed-ep"
    deploy.begin_create_endpoint(workspace, name).result(timeout=SLOW_RUN)
    page = _page(seeded.state_dir, monkeypatch, endpoint=name)
    _ok(page.button(key="endpoint_delete_open").click().run())
    # enabled before the name is typed: one click must do (see the deployments' delete)
    assert not page.button(key="endpoint_delete_confirm").disabled
    table = page.table[0].value
    assert name in table.loc["endpoints", "before"]
    assert name not in table.loc["endpoints", "after"]
    page.text_input(key="endpoint_delete_typed").input("page-doomed")
    _ok(page.button(key="endpoint_delete_confirm").click().run())
    assert f"You typed 'page-doomed', not '{name}'; nothing was deleted." in _errors(page)
    assert name in [h.name for h in list_endpoint_heads(workspace)]
    page.text_input(key="endpoint_delete_typed").input(name)
    _ok(page.button(key="endpoint_delete_confirm").click().run(timeout=SLOW_RUN))
    assert any(f"Endpoint '{name}'" in s.value and "deleted" in s.value for s in page.success)
    assert name not in [h.name for h in list_endpoint_heads(workspace)]
    assert name not in page.selectbox(key="selected_endpoint_box").options
    [change] = _changes(workspace, name, audit_log)
    assert (change.action, change.outcome) == ("delete_endpoint", "Succeeded")


def test_read_only_mode_disables_create_deploy_and_delete_with_the_reason(
    seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEGREEN_READ_ONLY", "1")
    page = _page(seeded.state_dir, monkeypatch)
    page.text_input(key="new_endpoint_name").input("fresh-name")
    page.text_input(key="new_deployment_yaml_path").input(str(EXAMPLES / "green-deployment.yml"))
    page.text_input(key="new_deployment_yaml_name").input("never")
    _ok(page.run())
    for key in ("new_endpoint_open", "new_deployment_yaml_open", "endpoint_delete_open"):
        button = page.button(key=key)
        assert button.disabled, key
        assert "Read-only mode" in (button.help or ""), key
    assert any("Read-only mode" in i.value for i in page.info)
