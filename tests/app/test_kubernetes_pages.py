"""A Kubernetes online endpoint in the dashboard, against a real emulator: the Endpoints and
Deployments pages name its compute, and the traffic editor turns the mirror off and refuses
one before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.ai.ml.entities import KubernetesOnlineEndpoint
from streamlit.testing.v1 import AppTest

from components.traffic_editor import EditorKeys
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, kubernetes_deployment

pytestmark = pytest.mark.emulator

ENDPOINT = "k8s-page-ep"
LABEL = "Kubernetes: k8s-compute"


@pytest.fixture(scope="module")
def k8s_ep(emulator: RunningEmulator, workspace: Workspace) -> Iterator[RunningEmulator]:
    """ENDPOINT on k8s-compute: blue (all live traffic) and green (0%)."""
    ml = workspace.ml_client
    ml.online_endpoints.begin_create_or_update(
        KubernetesOnlineEndpoint(name=ENDPOINT, compute="k8s-compute")
    ).result()
    pollers = [
        ml.online_deployments.begin_create_or_update(
            kubernetes_deployment(emulator.state_dir, ENDPOINT, name)
        )
        for name in ("blue", "green")
    ]
    for poller in pollers:
        poller.result()
    endpoint = ml.online_endpoints.get(ENDPOINT)
    endpoint.traffic = {"blue": 100}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    yield emulator
    ml.online_endpoints.begin_delete(ENDPOINT).result()


@pytest.fixture
def app_env(
    k8s_ep: RunningEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> RunningEmulator:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(k8s_ep.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)
    return k8s_ep


def _open(page: str) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params["endpoint"] = ENDPOINT
    app.run()
    app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def _frame_of(app: AppTest) -> dict[str, str]:
    frames = [df.value for df in app.dataframe if "blue" in list(df.value.get("deployment", []))]
    assert frames, [df.value for df in app.dataframe]
    table = frames[0].set_index("deployment")
    return {name: str(table.loc[name, "compute"]) for name in ("blue", "green")}


def test_the_endpoints_page_shows_the_kubernetes_compute(app_env: RunningEmulator) -> None:
    app = _open("app_pages/endpoints.py")
    compute = [m.value for m in app.markdown if m.value.startswith("**Compute**")]
    assert any(LABEL in text for text in compute), compute
    assert _frame_of(app) == {"blue": LABEL, "green": LABEL}


def test_the_deployments_page_shows_the_kubernetes_compute(app_env: RunningEmulator) -> None:
    app = _open("app_pages/deployments.py")
    assert _frame_of(app) == {"blue": LABEL, "green": LABEL}


def test_the_traffic_editor_turns_the_mirror_off_and_refuses_one(
    app_env: RunningEmulator, workspace: Workspace
) -> None:
    app = _open("app_pages/traffic.py")
    keys = EditorKeys.of(workspace.key, ENDPOINT)
    assert app.slider(key=keys.live("blue")).value == 100
    assert app.selectbox(key=keys.mirror_target).disabled
    assert app.slider(key=keys.mirror_percent).disabled
    captions = "\n".join(c.value for c in app.caption)
    assert "Kubernetes online endpoint" in captions and "does not mirror" in captions
    assert not app.error

    # No one can move the disabled controls; a mirror the session holds anyway (as from a
    # plan or an older page) is refused by the rule, before anything is sent.
    app.session_state[keys.mirror_target] = "green"
    app.session_state[keys.mirror_percent] = 10
    app.run()
    assert not app.exception, app.exception
    errors = "\n".join(str(e.value) for e in app.error)
    assert "Kubernetes online endpoint" in errors and "cannot mirror" in errors
    assert app.button(key=keys.apply).disabled
    entity = workspace.ml_client.online_endpoints.get(ENDPOINT)
    assert not entity.mirror_traffic


def test_the_deploy_page_offers_the_computes_instance_types_and_refuses_a_managed_yaml(
    app_env: RunningEmulator, workspace: Workspace
) -> None:
    app = _open("app_pages/deploy.py")
    app.radio(key="new_deployment_from").set_value("like").run()
    app.selectbox(key=f"new_deployment_like_{ENDPOINT}").set_value("blue")
    app.text_input(key="new_deployment_like_name").input("blue-large").run()
    assert not app.exception, app.exception
    choice = app.selectbox(key=f"new_deployment_like_type_{ENDPOINT}")
    assert choice.options == ["defaultinstancetype", "largecpu"]
    assert choice.value == "defaultinstancetype"
    choice.set_value("largecpu").run()
    app.button(key="new_deployment_like_open").click().run()
    app.button(key="new_deployment_confirm").click().run(timeout=300)
    assert not app.exception, app.exception
    made = workspace.ml_client.online_deployments.get("blue-large", ENDPOINT)
    assert (made.type, made.instance_type) == ("Kubernetes", "largecpu")

    app = _open("app_pages/deploy.py")
    path = REPO / "examples" / "green-deployment.yml"
    app.text_input(key="new_deployment_yaml_path").input(str(path)).run()
    assert not app.exception, app.exception
    errors = "\n".join(str(e.value) for e in app.error)
    assert "Managed online deployment" in errors and "Kubernetes online endpoint" in errors
