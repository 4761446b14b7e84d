"""The Deployments page against a real emulator: list, scale, delete, logs, read-only mode."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from components import loading
from components.log_view import open_key as open_log_key
from rollout import history
from rollout.endpoints import get_endpoint, scoring_credential
from rollout.invoke import invoke, parse_request
from rollout.metrics import metrics_client
from rollout.readiness import read_ready
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, example_yaml, seed_tutorial_endpoint, wait_until

pytestmark = pytest.mark.emulator

ENDPOINT = "deploypage-ep"
SLOW_RUN = 300  # seconds: scaling starts instance processes, on a busy 2-core machine


@pytest.fixture(scope="module")
def yaml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploypage-yaml")


def _apply_deployment(
    emulator: RunningEmulator, examples: Path, folder: Path, name: str, *, like: str, **kw: Any
) -> None:
    from emulator.apply import apply_file

    path = example_yaml(f"{like}-deployment", folder, name=name, endpoint_name=ENDPOINT)
    apply_file(emulator.state_dir, path, **kw)


@pytest.fixture(scope="module")
def seeded(emulator: RunningEmulator, examples: Path, yaml_dir: Path) -> RunningEmulator:
    """Endpoint `deploypage-ep`: blue (model-1) with all live traffic, green (model-2) at 0%."""

    seed_tutorial_endpoint(emulator, ENDPOINT, yaml_dir)
    return emulator


@pytest.fixture
def audit_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "bluegreen"))
    return tmp_path / "bluegreen" / "history.db"


def _page(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(state_dir))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.switch_page("app_pages/deployments.py")
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    assert not app.exception, app.exception
    return app


@pytest.fixture
def page(seeded: RunningEmulator, audit_log: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    return _page(seeded.state_dir, monkeypatch)


def _choose(app: AppTest, deployment: str) -> None:
    app.selectbox(key=f"deployment_{ENDPOINT}").set_value(deployment).run()
    assert not app.exception, app.exception


def _captions(app: AppTest) -> str:
    return "\n".join(c.value for c in app.caption)


def test_the_page_lists_each_deployment_with_state_model_instances_and_traffic(
    page: AppTest,
) -> None:
    table = page.dataframe[0].value.set_index("deployment")
    assert table.loc["blue", "state"] == "Succeeded"
    assert table.loc["blue", "model"] == "model-1:1"
    assert table.loc["blue", "live %"] == 100
    assert table.loc["green", "model"] == "model-2:1"
    assert table.loc["green", "live %"] == 0
    assert table.loc["green", "timeout ms"] == 5000
    assert table.loc["green", "concurrent / instance"] == 1


def test_the_table_says_how_many_instances_are_ready_of_those_asked_for(
    seeded: RunningEmulator, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what the page reads, straight: wait for the emulator's first capacity sample of both
    wait_until(
        lambda: (
            read_ready(
                workspace,
                metrics_client(workspace),
                {ENDPOINT: ["blue", "green"]},
                granularity=timedelta(seconds=10),
            ).get(ENDPOINT, {})
            == {"blue": 1, "green": 1}
        ),
        timeout=60,
        what="a DeploymentCapacity sample of blue and green",
    )
    loading._ready.clear()  # another test's read may be cached from before the sample
    page = _page(seeded.state_dir, monkeypatch)
    table = page.dataframe[0].value.set_index("deployment")
    assert table.loc["blue", "ready"] == "1/1"
    assert table.loc["green", "ready"] == "1/1"
    assert "ready: instances running at the last sample" in _captions(page)


def test_a_deployment_with_live_traffic_cannot_be_deleted_and_the_page_says_why(
    page: AppTest,
) -> None:
    _choose(page, "blue")
    button = page.button(key="delete_open")
    assert button.disabled
    assert "100% live traffic" in _captions(page)
    assert "set its traffic to 0 first" in (button.help or "")


def test_scaling_asks_for_confirmation_then_applies_and_is_recorded(
    page: AppTest, workspace: Workspace, audit_log: Path
) -> None:
    _choose(page, "blue")
    assert page.button(key="scale_open").disabled  # the count has not changed yet
    page.number_input(key=f"scale_count_{ENDPOINT}_blue").set_value(2).run()
    page.button(key="scale_open").click().run()
    assert not page.exception, page.exception
    before_after = page.table[0].value
    assert before_after.loc["instances", "before"] == 1
    assert before_after.loc["instances", "after"] == 2
    page.text_input(key="scale_reason").input("more capacity before green")
    page.button(key="scale_confirm").click().run(timeout=SLOW_RUN)
    assert not page.exception, page.exception
    assert any("now has 2 instance(s)" in s.value for s in page.success), page.success
    blue = next(d for d in get_endpoint(workspace, ENDPOINT).deployments if d.name == "blue")
    assert blue.instance_count == 2
    changes = history.list_changes(workspace=workspace.key, endpoint=ENDPOINT, path=audit_log)
    assert [(c.action, c.before, c.after, c.reason, c.outcome) for c in changes] == [
        (
            "scale",
            {"deployment": "blue", "instance_count": 1},
            {"deployment": "blue", "instance_count": 2},
            "more capacity before green",
            "Succeeded",
        )
    ]


def test_deleting_a_deployment_without_traffic_needs_its_name_typed(
    seeded: RunningEmulator,
    examples: Path,
    yaml_dir: Path,
    workspace: Workspace,
    audit_log: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _apply_deployment(seeded, examples, yaml_dir, "spare", like="green")
    page = _page(seeded.state_dir, monkeypatch)
    _choose(page, "spare")
    assert not page.button(key="delete_open").disabled
    page.button(key="delete_open").click().run()
    assert not page.exception, page.exception
    # enabled before anything is typed: in a browser a text input commits on blur, so a
    # button enabled by the typed name would need a first click just to commit it
    assert not page.button(key="delete_confirm").disabled
    before_after = page.table[0].value
    assert before_after.loc["deployments", "before"] == "blue, green, spare"
    assert before_after.loc["deployments", "after"] == "blue, green"
    page.text_input(key="delete_typed").input("spar")
    page.button(key="delete_confirm").click().run()
    assert "You typed 'spar', not 'spare'; nothing was deleted." in [e.value for e in page.error]
    assert "spare" in [d.name for d in get_endpoint(workspace, ENDPOINT).deployments]
    # the name typed and Delete clicked in one go, as one click in a browser sends them
    page.text_input(key="delete_typed").input("spare")
    page.button(key="delete_confirm").click().run(timeout=SLOW_RUN)
    assert not page.exception, page.exception
    assert any("'spare'" in s.value and "deleted" in s.value for s in page.success)
    names = [d.name for d in get_endpoint(workspace, ENDPOINT).deployments]
    assert "spare" not in names
    assert page.selectbox(key=f"deployment_{ENDPOINT}").options == ["blue", "green"]
    changes = history.list_changes(workspace=workspace.key, endpoint=ENDPOINT, path=audit_log)
    assert [(c.action, c.before["deployment"], c.outcome) for c in changes] == [
        ("delete", "spare", "Succeeded")
    ]


@pytest.mark.parametrize("count", [0, 99])
def test_a_count_outside_1_to_50_is_refused_in_the_apps_own_words(
    page: AppTest, count: int
) -> None:
    _choose(page, "green")
    page.number_input(key=f"scale_count_{ENDPOINT}_green").set_value(count).run()
    assert not page.exception, page.exception
    assert page.number_input(key=f"scale_count_{ENDPOINT}_green").value == count
    errors = [e.value for e in page.error]
    assert f"Cannot scale to {count} instances: it must be 1 to 50." in errors, errors
    assert page.button(key="scale_open").disabled


def test_cancel_closes_the_dialog_and_changes_nothing(page: AppTest, workspace: Workspace) -> None:
    _choose(page, "green")
    page.button(key="delete_open").click().run()
    page.button(key="delete_confirm").click().run()
    assert "Type 'green' in the box above to confirm; nothing was deleted." in [
        e.value for e in page.error
    ]
    page.button(key="delete_cancel").click().run()
    assert not page.exception, page.exception
    assert not [b for b in page.button if b.key == "delete_confirm"]
    assert "green" in [d.name for d in get_endpoint(workspace, ENDPOINT).deployments]


def _request_to(workspace: Workspace, deployment: str) -> None:
    """One scoring request straight to `deployment`: its log then says "request received"."""
    body = parse_request((REPO / "examples" / "sample-request.json").read_text())
    uri = get_endpoint(workspace, ENDPOINT).scoring_uri
    credential = scoring_credential(workspace, ENDPOINT)
    assert invoke(workspace, uri, credential, body, deployment=deployment).ok


def _open_logs(app: AppTest, deployment: str) -> None:
    _choose(app, deployment)
    app.session_state[open_log_key(ENDPOINT, deployment)] = True
    app.run()
    assert not app.exception, app.exception


def _log_box(app: AppTest) -> str:
    (box,) = [c for c in app.code if c.language in (None, "", "plaintext")]
    return box.value


def _arm_requests(app: AppTest, workspace: Workspace) -> int:
    return int(app.session_state["workspace_reads"][workspace.key].ws.arm_calls.count.requests)


def test_logs_are_not_read_until_their_section_is_opened(
    page: AppTest, workspace: Workspace
) -> None:
    # Nothing the page read goes stale during the test: the only reads are the ones it causes.
    page.session_state["workspace_reads"][workspace.key].ttl = 3600.0
    before = _arm_requests(page, workspace)
    _choose(page, "blue")
    _choose(page, "green")
    assert _arm_requests(page, workspace) == before
    assert not page.code, "no log is drawn while its section is closed"
    assert "Logs of green" in [e.label for e in page.expander]

    _open_logs(page, "green")
    assert _arm_requests(page, workspace) == before + 1  # getLogs, once
    assert "model 2" in _log_box(page)


def test_logs_show_the_last_lines_of_the_inference_server_after_a_request(
    page: AppTest, workspace: Workspace
) -> None:
    _request_to(workspace, "blue")
    _open_logs(page, "blue")
    page.button(key="logs_refresh").click().run()
    assert "model 1: request received" in _log_box(page)
    page.selectbox(key="logs_lines").set_value(100).run()
    assert len(_log_box(page).splitlines()) <= 100
    page.selectbox(key="logs_container").set_value("storage-initializer").run()
    assert not page.exception, page.exception
    assert "storage-initializer" in _log_box(page)


def test_the_log_filter_narrows_the_lines_and_says_how_many_match(
    page: AppTest, workspace: Workspace
) -> None:
    _request_to(workspace, "blue")
    _open_logs(page, "blue")
    page.button(key="logs_refresh").click().run()
    every = _log_box(page).splitlines()

    page.text_input(key="logs_filter").input("REQUEST Received").run()
    assert not page.exception, page.exception
    matching = _log_box(page).splitlines()
    assert matching == [line for line in every if "request received" in line.lower()]
    assert 0 < len(matching) < len(every)
    assert f'{len(matching)} of {len(every)} lines match "REQUEST Received"' in _captions(page)

    page.text_input(key="logs_filter").input("no such text in any line").run()
    assert f"0 of {len(every)} lines match" in _captions(page)
    assert "(no line of the" in _log_box(page)


def test_the_log_download_carries_the_lines_read(
    page: AppTest, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    served: dict[str, tuple[bytes, str | None]] = {}
    load = MemoryMediaFileStorage.load_and_get_id

    def keep(
        self: MemoryMediaFileStorage, data: Any, mimetype: str, kind: Any, filename: Any = None
    ) -> str:
        file_id = load(self, data, mimetype, kind, filename)
        served[file_id] = (data if isinstance(data, bytes) else b"", filename)
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    _request_to(workspace, "blue")
    _open_logs(page, "blue")
    page.button(key="logs_refresh").click().run()
    page.text_input(key="logs_filter").input("request received").run()  # the view, not the file

    (download,) = page.download_button
    file_id = download.proto.url.rsplit("/", 1)[-1].split(".", 1)[0]
    content, filename = served[file_id]
    assert filename == f"{ENDPOINT}-blue-inference-server.log"
    page.text_input(key="logs_filter").input("").run()
    assert content.decode().splitlines() == _log_box(page).splitlines()
    assert "model 1: request received" in content.decode()


def test_read_only_mode_disables_scale_and_delete_with_the_reason(
    seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEGREEN_READ_ONLY", "1")
    page = _page(seeded.state_dir, monkeypatch)
    _choose(page, "green")
    page.number_input(key=f"scale_count_{ENDPOINT}_green").set_value(3).run()
    for key in ("scale_open", "delete_open"):
        button = page.button(key=key)
        assert button.disabled, key
        assert "Read-only mode" in (button.help or ""), key
    assert any("Read-only mode" in i.value for i in page.info)
    assert "Read-only mode" in _captions(page)


def test_a_delete_the_service_refuses_is_explained_in_words(
    page: AppTest, workspace: Workspace
) -> None:
    from rollout.changes import begin_set_traffic

    _choose(page, "green")
    page.button(key="delete_open").click().run()
    # Someone gives green live traffic while the dialog is open.
    begin_set_traffic(workspace, ENDPOINT, traffic={"blue": 90, "green": 10}, mirror={}).result(
        timeout=120
    )
    try:
        page.text_input(key="delete_typed").input("green").run()
        page.button(key="delete_confirm").click().run()
        assert not page.exception, page.exception
        errors = [e.value for e in page.error]
        assert any("Nothing was changed" in e and "10% live traffic" in e for e in errors)
        assert "green" in [d.name for d in get_endpoint(workspace, ENDPOINT).deployments]
    finally:
        begin_set_traffic(workspace, ENDPOINT, traffic={"blue": 100, "green": 0}, mirror={}).result(
            timeout=120
        )
