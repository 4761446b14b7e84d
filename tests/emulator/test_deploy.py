"""Starting a rollout through rollout/deploy.py: the real MLClient against a real emulator.

Create an endpoint, add a deployment from the tutorial's green YAML under another name, add
"a new version like this one" with another model folder, delete an endpoint; and the
refusals, each before anything is sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollout import deploy
from rollout.endpoints import get_endpoint, get_logs, list_endpoint_heads
from rollout.errors import NotFound, RuleViolation
from rollout.workspace import Workspace
from tests.conftest import EXAMPLES, RunningEmulator, example_yaml, sdk_invoke

pytestmark = pytest.mark.emulator

ENDPOINT = "deploy-ep"
WAIT = 300  # seconds: a deployment starts an instance process, on a busy 2-core machine


@pytest.fixture(scope="module")
def endpoint(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`deploy-ep` created through deploy.py, with blue (model-1) taking all live traffic."""
    from emulator.apply import apply_file

    ws = emulator.workspace()
    deploy.begin_create_endpoint(
        ws, ENDPOINT, auth_mode="aml_token", description="made by test_deploy"
    ).result(timeout=WAIT)
    folder = tmp_path_factory.mktemp("deploy-yaml")
    blue = example_yaml("blue-deployment", folder, endpoint_name=ENDPOINT)
    apply_file(emulator.state_dir, blue, all_traffic=True)
    return ENDPOINT


def _sent(ws: Workspace) -> int:
    return ws.arm_calls.count.requests


def test_a_created_endpoint_has_its_auth_mode_and_no_traffic(
    endpoint: str, workspace: Workspace
) -> None:
    entity = workspace.ml_client.online_endpoints.get(endpoint)
    assert entity.provisioning_state == "Succeeded"
    assert entity.auth_mode.lower() == "aml_token"
    assert entity.description == "made by test_deploy"


def test_an_invalid_endpoint_name_is_refused_before_anything_is_sent(
    workspace: Workspace,
) -> None:
    before = _sent(workspace)
    with pytest.raises(RuleViolation) as refused:
        deploy.begin_create_endpoint(workspace, "9-lives--")
    message = str(refused.value)
    assert "must start with a letter" in message
    assert "dashes must be single" in message
    assert _sent(workspace) == before


def test_an_endpoint_name_that_is_taken_is_refused(endpoint: str, workspace: Workspace) -> None:
    with pytest.raises(RuleViolation, match="already exists in this workspace"):
        deploy.begin_create_endpoint(workspace, endpoint.upper())


def test_a_deployment_from_the_green_yaml_under_another_name_starts_at_0_percent(
    endpoint: str, workspace: Workspace
) -> None:
    new = deploy.load_deployment_yaml(
        EXAMPLES / "green-deployment.yml", endpoint=endpoint, name="candidate"
    )
    assert (new.endpoint, new.name, new.instance_count) == (endpoint, "candidate", 1)
    assert new.code == str((EXAMPLES / "model-2" / "onlinescoring").resolve())
    deploy.begin_create_deployment(workspace, new).result(timeout=WAIT)
    view = get_endpoint(workspace, endpoint)
    shares = {d.name: (d.state, d.live, d.mirror) for d in view.deployments}
    assert shares["candidate"] == ("Succeeded", 0, 0)
    assert shares["blue"] == ("Succeeded", 100, 0)
    candidate = next(d for d in view.deployments if d.name == "candidate")
    assert candidate.model.startswith("model-2:")
    assert "model 2" in get_logs(workspace, endpoint, "candidate")


def test_a_deployment_name_that_is_taken_is_refused(endpoint: str, workspace: Workspace) -> None:
    new = deploy.load_deployment_yaml(
        EXAMPLES / "green-deployment.yml", endpoint=endpoint, name="blue"
    )
    with pytest.raises(RuleViolation, match="'blue' already exists on endpoint"):
        deploy.begin_create_deployment(workspace, new)


def test_a_new_version_like_blue_with_another_model_folder_keeps_blues_settings(
    endpoint: str, workspace: Workspace
) -> None:
    new = deploy.plan_like(
        workspace,
        endpoint,
        "blue",
        name="blue-v2",
        model=deploy.LocalModel(EXAMPLES / "model-2" / "model", name="model-2"),
    )
    assert new.model.startswith("model-2 from ")
    assert new.source == "like 'blue'"
    deploy.begin_create_deployment(workspace, new).result(timeout=WAIT)
    blue = workspace.ml_client.online_deployments.get("blue", endpoint)
    v2 = workspace.ml_client.online_deployments.get("blue-v2", endpoint)
    assert v2.provisioning_state == "Succeeded"
    assert v2.code_configuration.code == blue.code_configuration.code
    assert v2.environment == blue.environment
    assert v2.instance_type == blue.instance_type
    assert v2.request_settings.request_timeout_ms == blue.request_settings.request_timeout_ms
    assert "/models/model-2/versions/" in v2.model
    # model-1's scoring code, serving model-2's weights
    assert "model 1" in get_logs(workspace, endpoint, "blue-v2")
    view = get_endpoint(workspace, endpoint)
    assert {d.name: d.live for d in view.deployments} == {
        "blue": 100,
        "blue-v2": 0,
        "candidate": 0,
    }
    # The same folder as green's model: its registered version is reused, not copied again.
    assert deploy.list_model_versions(workspace, "model-2") == [v2.model.rsplit("/", 1)[-1]]


def test_a_new_version_like_blue_with_a_registered_model_version(
    endpoint: str, workspace: Workspace
) -> None:
    # model-2:1 was registered when green's YAML was deployed above.
    versions = deploy.list_model_versions(workspace, "model-2")
    new = deploy.plan_like(
        workspace,
        endpoint,
        "blue",
        name="blue-m2",
        model=deploy.RegisteredModel("model-2", versions[0]),
    )
    deploy.begin_create_deployment(workspace, new).result(timeout=WAIT)
    entity = workspace.ml_client.online_deployments.get("blue-m2", endpoint)
    assert entity.model.endswith(f"/models/model-2/versions/{versions[0]}")
    live = {d.name: d.live for d in get_endpoint(workspace, endpoint).deployments}
    assert live["blue-m2"] == 0


def test_like_this_one_copies_every_setting_but_what_is_changed(
    endpoint: str, workspace: Workspace, tmp_path: Path
) -> None:
    blue = workspace.ml_client.online_deployments.get("blue", endpoint)
    copy = deploy.deployment_like(
        blue, name="copy", code=EXAMPLES / "model-2" / "onlinescoring", instance_count=3
    )
    assert (copy.name, copy.instance_count) == ("copy", 3)
    assert copy.code_configuration.code == str((EXAMPLES / "model-2" / "onlinescoring").resolve())
    assert copy.code_configuration.scoring_script == blue.code_configuration.scoring_script
    assert (copy.model, copy.environment) == (blue.model, blue.environment)
    assert copy.request_settings.max_concurrent_requests_per_instance == (
        blue.request_settings.max_concurrent_requests_per_instance
    )
    assert (blue.name, blue.instance_count) == ("blue", 1)  # the original is left as it was
    named = deploy.deployment_like(blue, name="x", model=deploy.LocalModel(tmp_path, "model-9"))
    assert (named.model.name, named.model.path) == ("model-9", str(tmp_path.resolve()))


def test_like_this_one_refuses_a_missing_folder_and_a_bad_count_in_words(
    endpoint: str, tmp_path: Path
) -> None:
    problems = deploy.check_like_form(
        endpoint,
        ["blue"],
        "blue",
        model=deploy.LocalModel(tmp_path / "nowhere"),
        code=tmp_path / "no-code",
        instance_count=0,
    )
    text = "\n".join(p.message for p in problems)
    assert "'blue' already exists" in text
    assert f"the model folder {tmp_path / 'nowhere'} does not exist" in text
    assert f"the code folder {tmp_path / 'no-code'} does not exist" in text
    assert "from 1 to 50" in text


def test_an_uploaded_yaml_resolves_its_paths_against_the_folder_given(tmp_path: Path) -> None:
    text = (EXAMPLES / "blue-deployment.yml").read_text()
    new = deploy.load_deployment_yaml(text, endpoint="any-ep", relative_to=EXAMPLES)
    assert new.name == "blue"
    assert new.model == f"model-1 from {(EXAMPLES / 'model-1' / 'model').resolve()}"
    with pytest.raises(deploy.InvalidDeploymentFile, match=r"conda\.yaml does not exist"):
        deploy.load_deployment_yaml(text, endpoint="any-ep", relative_to=tmp_path)
    (tmp_path / "broken.yml").write_text("name: [unclosed\n")
    with pytest.raises(deploy.InvalidDeploymentFile, match=r"broken\.yml"):
        deploy.load_deployment_yaml(tmp_path / "broken.yml", endpoint="any-ep")


def test_a_model_folder_and_its_file_alone_deploy_side_by_side(
    endpoint: str, emulator: RunningEmulator, workspace: Workspace, tmp_path: Path
) -> None:
    from emulator.apply import apply_file

    # Registered without a name, each is stored under a digest of its content. The same
    # pickle is at model/sklearn_regression_model.pkl under AZUREML_MODEL_DIR in one and at
    # sklearn_regression_model.pkl in the other, so the two must not be one asset.
    folder = EXAMPLES / "model-1" / "model"
    script = (EXAMPLES / "model-1" / "onlinescoring" / "score.py").read_text()
    as_file = script.replace(
        'os.path.join(model_dir, "model", MODEL_FILENAME)',
        "os.path.join(model_dir, MODEL_FILENAME)",
    )
    assert as_file != script
    code = tmp_path / "file-code"
    code.mkdir()
    (code / "score.py").write_text(as_file)
    for name, model, changes in (
        ("as-folder", folder, {}),
        (
            "as-file",
            folder / "sklearn_regression_model.pkl",
            {"code_configuration": {"code": str(code), "scoring_script": "score.py"}},
        ),
    ):
        yaml_file = example_yaml(
            "blue-deployment",
            tmp_path,
            name=name,
            endpoint_name=endpoint,
            model={"path": str(model)},
            **changes,
        )
        apply_file(emulator.state_dir, yaml_file)
    ml = workspace.ml_client
    models = {n: ml.online_deployments.get(n, endpoint).model for n in ("as-folder", "as-file")}
    assert models["as-folder"] != models["as-file"]
    request = EXAMPLES / "sample-request.json"
    answers = {n: sdk_invoke(ml, endpoint, request, deployment=n) for n in models}
    assert answers["as-folder"] == answers["as-file"]
    assert len(json.loads(answers["as-file"])) == 2


def test_deleting_an_endpoint_deletes_it_with_its_deployments(
    workspace: Workspace, examples: Path
) -> None:
    name = "deploy-gone"
    deploy.begin_create_endpoint(workspace, name).result(timeout=WAIT)
    new = deploy.load_deployment_yaml(examples / "green-deployment.yml", endpoint=name, name="only")
    deploy.begin_create_deployment(workspace, new).result(timeout=WAIT)
    deploy.begin_delete_endpoint(workspace, name).result(timeout=WAIT)
    assert name not in [h.name for h in list_endpoint_heads(workspace)]
    with pytest.raises(NotFound):
        get_endpoint(workspace, name)
