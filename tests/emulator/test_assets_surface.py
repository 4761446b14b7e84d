"""Assets, the default datastore, ARM's error shape and aad_token scoring, through
the real azure-ai-ml MLClient (and plain HTTPS where the SDK has no call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from azure.ai.ml._utils._storage_utils import get_storage_client
from azure.core.exceptions import ResourceNotFoundError

from emulator.apply import apply_file
from rollout.endpoints import scoring_credential
from rollout.workspace import Workspace
from tests.conftest import (
    EXAMPLES,
    RunningEmulator,
    example_yaml,
    sdk_invoke,
    seed_tutorial_endpoint,
    wait_until,
)

SEEDED = "assets-ep"
AAD = "aad-ep"
REQUEST = EXAMPLES / "sample-request.json"


class Arm:
    """Plain HTTPS to the emulator's workspace, with its ARM token."""

    def __init__(self, emulator: RunningEmulator) -> None:
        assert emulator.facts is not None
        self.facts = emulator.facts
        self.workspace = (
            f"/subscriptions/{self.facts.subscription_id}/resourceGroups/"
            f"{self.facts.resource_group}/providers/Microsoft.MachineLearningServices/"
            f"workspaces/{self.facts.workspace_name}"
        )

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.facts.token if token is None else token}"}
        return httpx.request(
            method,
            self.facts.arm_url + path,
            json=body,
            headers=headers,
            verify=self.facts.ca_cert,
            timeout=30,
        )

    def put_version(self, kind: str, name: str, version: str, props: dict[str, Any]) -> None:
        path = f"{self.workspace}/{kind}/{name}/versions/{version}?api-version=2023-04-01"
        response = self.request("PUT", path, {"properties": props})
        assert response.status_code in (200, 201), response.text

    def score(self, endpoint: str, token: str) -> httpx.Response:
        return httpx.post(
            f"{self.facts.arm_url}/online/{endpoint}/score",
            content=REQUEST.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            verify=self.facts.ca_cert,
            timeout=30,
        )


@pytest.fixture(scope="module")
def arm(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Arm:
    seed_tutorial_endpoint(emulator, SEEDED, tmp_path_factory.mktemp("assets"))
    return Arm(emulator)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("surface-model") / "model.txt"
    path.write_text("weights")
    return path


# models


def test_models_list_names_each_registered_model_once_with_its_latest_version(
    arm: Arm, workspace: Workspace
) -> None:
    models = {m.name: m for m in workspace.ml_client.models.list()}
    assert {"model-1", "model-2"} <= models.keys()
    assert models["model-1"].latest_version is not None
    assert models["model-1"].version is None  # a container, not a version


def test_models_get_answers_the_version_with_flavors_path_and_type(
    arm: Arm, workspace: Workspace
) -> None:
    model = workspace.ml_client.models.get("model-1", "1")
    assert model.name == "model-1" and model.version == "1"
    assert not model.flavors  # the SDK turns the empty `flavors` it reads into None
    wire = arm.request("GET", f"{arm.workspace}/models/model-1/versions/1?api-version=1").json()
    assert wire["properties"]["flavors"] == {}
    assert wire["properties"]["isArchived"] is False
    assert model.type == "custom_model"
    # the registered local file, as a URI the SDK keeps as it is
    assert str(model.path) == (EXAMPLES / "model-1" / "model").as_uri().replace(
        "file:///", "file://localhost/"
    )
    assert model.creation_context is not None and model.creation_context.created_at is not None


def test_models_list_by_name_and_the_latest_label_see_every_version(
    arm: Arm, workspace: Workspace, model_file: Path
) -> None:
    for version in ("1", "2"):
        arm.put_version(
            "models",
            "surface-model",
            version,
            {"modelUri": model_file.as_uri(), "modelType": "custom_model", "tags": {"v": version}},
        )
    ml = workspace.ml_client
    assert sorted(m.version for m in ml.models.list(name="surface-model")) == ["1", "2"]
    latest = ml.models.get("surface-model", label="latest")
    assert latest.version == "2" and latest.tags == {"v": "2"}
    container = next(m for m in ml.models.list() if m.name == "surface-model")
    assert container.latest_version == "2"


def test_model_versions_honour_orderby_top_and_list_view_type(arm: Arm, model_file: Path) -> None:
    for version in ("1", "2"):
        arm.put_version("models", "ordered-model", version, {"modelUri": model_file.as_uri()})
    base = f"{arm.workspace}/models/ordered-model/versions?api-version=2023-08-01-preview"

    def names(query: str) -> list[str]:
        response = arm.request("GET", base + query)
        assert response.status_code == 200, response.text
        return [d["name"] for d in response.json()["value"]]

    assert names("&$orderBy=createdtime desc") == ["2", "1"]
    assert names("&$orderBy=createdtime asc&$top=1") == ["1"]
    assert names("&listViewType=ArchivedOnly") == []
    assert names("&listViewType=All") == ["1", "2"]
    refused = arm.request("GET", base + "&$orderBy=size")
    assert refused.status_code == 400
    assert "createdtime" in refused.json()["error"]["message"]


def test_an_unknown_model_is_404_through_the_sdk(arm: Arm, workspace: Workspace) -> None:
    with pytest.raises(ResourceNotFoundError):
        workspace.ml_client.models.get("no-such-model", "1")


# environments and code


def test_environments_list_and_get_answer_the_registered_environment(
    arm: Arm, workspace: Workspace
) -> None:
    ml = workspace.ml_client
    # apply registers an environment by its content, as env-<digest>
    name = next(e.name for e in ml.environments.list() if e.name.startswith("env-"))
    versions = list(ml.environments.list(name=name))
    assert [v.version for v in versions] == ["1"]
    env = ml.environments.get(name, "1")
    assert env.image and env.image.startswith("mcr.microsoft.com/")
    assert isinstance(env.conda_file, dict) and "dependencies" in env.conda_file
    assert env.os_type == "Linux"
    assert ml.environments.get(name, label="latest").version == "1"


def test_code_get_answers_the_registered_snapshot(arm: Arm, workspace: Workspace) -> None:
    listing = arm.request("GET", f"{arm.workspace}/codes?api-version=2023-04-01").json()
    name = listing["value"][0]["name"]
    code = workspace.ml_client._code.get(name, "1")
    assert code.name == name and code.version == "1"
    assert str(code.path).startswith("file://localhost/")


def test_a_long_listing_comes_in_pages_the_sdk_follows(arm: Arm, workspace: Workspace) -> None:
    for n in range(1, 106):
        arm.put_version("environments", "paged-env", str(n), {"image": f"example/image:{n}"})
    first = arm.request("GET", f"{arm.workspace}/environments/paged-env/versions?api-version=1")
    assert len(first.json()["value"]) == 100 and "nextLink" in first.json()
    versions = list(workspace.ml_client.environments.list(name="paged-env"))
    assert sorted(int(v.version) for v in versions) == list(range(1, 106))


# datastore and computes


def test_the_default_datastore_describes_storage_the_emulator_does_not_have(
    arm: Arm, workspace: Workspace
) -> None:
    ml = workspace.ml_client
    default = ml.datastores.get_default()
    assert default.name == "workspaceblobstore"
    assert default.type == "AzureBlob"
    # The reserved .invalid domain: an upload through it never leaves the machine.
    assert default.endpoint == "invalid"
    assert default.container_name.startswith("azureml-blobstore-")
    assert ml.datastores.get("workspaceblobstore", include_secrets=True).name == default.name
    assert [d.name for d in ml.datastores.list()] == ["workspaceblobstore"]
    with pytest.raises(ResourceNotFoundError):
        ml.datastores.get("no-such-store")


# ARM's error shape


def test_an_unknown_route_answers_arm_json_errors(arm: Arm) -> None:
    typed = arm.request("GET", f"{arm.workspace}/jobs?api-version=2024-01-01")
    assert typed.status_code == 404
    assert typed.headers["content-type"] == "application/json"
    assert typed.json()["error"]["code"] == "InvalidResourceType"
    assert "'workspaces/jobs'" in typed.json()["error"]["message"]
    anywhere = arm.request("GET", "/no/such/path")
    assert anywhere.status_code == 404
    assert anywhere.json()["error"]["code"] == "NotFound"


def test_an_unknown_route_without_the_token_is_401(arm: Arm) -> None:
    response = arm.request("GET", f"{arm.workspace}/jobs", token="not-the-token")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"


def test_a_wrong_method_is_405_with_a_json_body_and_allow(arm: Arm) -> None:
    response = arm.request("POST", f"{arm.workspace}/onlineEndpoints/{SEEDED}")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "MethodNotAllowed"
    assert {"GET", "PUT", "PATCH", "DELETE"} <= set(response.headers["allow"].split(", "))
    assets = arm.request("DELETE", f"{arm.workspace}/models")
    assert assets.status_code == 405 and assets.headers["content-type"] == "application/json"


def test_the_scoring_path_keeps_its_own_error_shape(arm: Arm) -> None:
    # ARM's JSON errors are for ARM's routes; the scoring URI answers as the data plane does.
    wrong_method = arm.request("DELETE", f"/online/{SEEDED}/score")
    assert wrong_method.status_code == 405
    # GET is a scoring method (azmlinfsrv passes the query string to run()), so the ARM
    # token, which is not one of the endpoint's keys, is refused before any instance sees it.
    not_a_key = arm.request("GET", f"/online/{SEEDED}/score")
    assert not_a_key.status_code == 401
    for response in (wrong_method, not_a_key):
        assert "message" in response.json() and "error" not in response.json()


def test_the_sdks_upload_target_is_on_a_domain_that_never_resolves(
    arm: Arm, workspace: Workspace
) -> None:
    # The emulator has no storage account (README, differences). Built as the SDK builds
    # it before an upload, the blob client points at the reserved .invalid domain, so an
    # upload (models.create_or_update of a local path) fails at the name lookup, after the
    # storage client's retries, and nothing leaves the machine.
    store = workspace.ml_client.datastores.get_default()
    client = get_storage_client(
        credential=workspace.credential,
        storage_account=store.account_name,
        storage_type=store.type,
        container_name=store.container_name,
    )
    host = urlparse(client.container_client.url).hostname
    assert host == "bluegreenemulator.blob.invalid"


# aad_token endpoints


@pytest.fixture(scope="module")
def aad(emulator: RunningEmulator, arm: Arm, tmp_path_factory: pytest.TempPathFactory) -> Arm:
    folder = tmp_path_factory.mktemp("aad")
    state = emulator.state_dir
    apply_file(state, example_yaml("endpoint", folder, name=AAD, auth_mode="aad_token"))
    blue = example_yaml("blue-deployment", folder, endpoint_name=AAD)
    apply_file(state, blue, all_traffic=True, if_missing=True)
    return arm


def test_an_aad_token_endpoint_scores_through_the_sdk(aad: Arm, workspace: Workspace) -> None:
    # azure-ai-ml asks its credential for a token for https://ml.azure.com and sends it.
    answer = sdk_invoke(workspace.ml_client, AAD, REQUEST)
    assert len(json.loads(answer)) == 2


def test_an_aad_token_endpoint_takes_the_emulators_entra_token(aad: Arm) -> None:
    response = aad.score(AAD, aad.facts.token)
    assert response.status_code == 200, response.text
    assert response.headers["azureml-model-deployment"] == "blue"


def test_an_aad_token_endpoint_refuses_its_keys_and_other_tokens(aad: Arm) -> None:
    keys = aad.request(
        "POST", f"{aad.workspace}/onlineEndpoints/{AAD}/listKeys?api-version=2023-04-01"
    ).json()
    assert aad.score(AAD, keys["primaryKey"]).status_code == 401
    assert aad.score(AAD, "an-entra-token-of-someone-else").status_code == 401


def test_a_key_endpoint_refuses_the_entra_token(aad: Arm) -> None:
    assert aad.score(SEEDED, aad.facts.token).status_code == 401


def test_no_aml_token_is_issued_for_an_aad_token_endpoint(aad: Arm) -> None:
    response = aad.request(
        "POST", f"{aad.workspace}/onlineEndpoints/{AAD}/token?api-version=2023-04-01"
    )
    assert response.status_code == 400
    assert "Microsoft Entra" in response.json()["error"]["message"]


def test_the_dashboards_scoring_credential_for_aad_is_the_entra_token(
    aad: Arm, workspace: Workspace
) -> None:
    assert scoring_credential(workspace, AAD) == aad.facts.token


def test_the_sdk_invoke_of_a_key_endpoint_still_works(aad: Arm, workspace: Workspace) -> None:
    answer = sdk_invoke(workspace.ml_client, SEEDED, REQUEST)
    assert len(json.loads(answer)) == 2


def test_an_aml_token_of_the_same_endpoint_is_refused_once_it_is_aad(aad: Arm) -> None:
    path = f"{aad.workspace}/onlineEndpoints/switched-ep?api-version=2023-04-01"

    def put(auth_mode: str) -> None:
        body = {"location": "local", "properties": {"authMode": auth_mode}}
        response = aad.request("PUT", path, body)
        assert response.status_code in (200, 201), response.text

    put("AMLToken")
    token_path = path.replace("?", "/token?")
    token = wait_until(lambda: aad.request("POST", token_path).json().get("accessToken"))
    assert aad.score("switched-ep", token).status_code == 404  # no deployment, but let in
    put("AADToken")
    wait_until(lambda: aad.score("switched-ep", token).status_code == 401, what="AADToken")
    # The Entra token passes authentication (and finds no deployment to serve it).
    assert aad.score("switched-ep", aad.facts.token).status_code == 404
