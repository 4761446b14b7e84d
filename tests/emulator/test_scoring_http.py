"""Scoring with plain HTTPS, as curl makes the calls: keys from ARM, then POST the scoring URI.

Nothing here goes through MLClient's invoke: listKeys, regenerateKeys and token are ARM REST
calls with the emulator's bearer token, and scoring is a POST with the endpoint's key or
token. MLClient is used only to set the scene (endpoints, deployments, traffic), and once to
check that its invoke reads a model error (424) as on Azure.
"""

from __future__ import annotations

import secrets
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.ml import load_online_deployment
from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineEndpoint
from azure.core.exceptions import HttpResponseError

from emulator.apply import register_local_assets
from rollout.workspace import Workspace
from tests.conftest import RunningEmulator, sdk_invoke

KEY_ENDPOINT = "scoring-ep"
TOKEN_ENDPOINT = "scoring-tok"
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
NO_POSITIVE_WEIGHT = "The endpoint doesn't have any valid deployment with positive weight."

TINY_SCORE = """
import json
import logging

logger = logging.getLogger(__name__)


def init():
    logger.info("tiny: init complete")


def run(raw_data):
    payload = json.loads(raw_data)
    if payload.get("fail"):
        raise ValueError("boom")
    return {"ok": True, "echo": payload}
"""


@dataclass
class Http:
    """curl's view of the emulator: the ARM URL, the bearer token and the CA certificate."""

    arm_url: str
    scope: str
    token: str
    verify: str

    def arm(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.arm_url}{self.scope}{path}",
            params={"api-version": "2023-04-01"},
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=self.verify,
            timeout=30,
        )

    def keys(self, endpoint: str) -> dict[str, str]:
        response = self.arm("POST", f"/onlineEndpoints/{endpoint}/listKeys")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def scoring_uri(self, endpoint: str) -> str:
        response = self.arm("GET", f"/onlineEndpoints/{endpoint}")
        assert response.status_code == 200, response.text
        return str(response.json()["properties"]["scoringUri"])

    def score(
        self,
        endpoint: str,
        credential: str,
        *,
        json: Any = SAMPLE,
        content: bytes | None = None,
        deployment: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
        if deployment is not None:
            headers["azureml-model-deployment"] = deployment
        return httpx.post(
            self.scoring_uri(endpoint),
            content=content,
            json=None if content is not None else json,
            headers=headers,
            verify=self.verify,
            timeout=30,
        )

    def wait(self, response: httpx.Response, timeout: float = 30.0) -> None:
        """Follow a long-running operation's Location header until it is done."""
        assert response.status_code in (200, 201, 202), response.text
        location = response.headers.get("Location")
        if response.status_code != 202 or not location:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            poll = httpx.get(
                location, headers={"Authorization": f"Bearer {self.token}"}, verify=self.verify
            )
            if poll.status_code != 202:
                assert poll.status_code == 200, poll.text
                return
            time.sleep(0.1)
        raise AssertionError(f"operation {location} did not finish within {timeout} s")


@pytest.fixture(scope="module")
def http(emulator: RunningEmulator) -> Http:
    facts = emulator.facts
    assert facts is not None
    scope = (
        f"/subscriptions/{facts.subscription_id}/resourceGroups/{facts.resource_group}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{facts.workspace_name}"
    )
    return Http(facts.arm_url, scope, facts.token, facts.ca_cert)


@pytest.fixture(scope="module")
def tiny_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A code folder whose run() raises ValueError("boom") for {"fail": true}."""
    code = tmp_path_factory.mktemp("tiny-code")
    (code / "score.py").write_text(textwrap.dedent(TINY_SCORE))
    return code


@pytest.fixture(scope="module")
def scene(
    workspace: Workspace, emulator: RunningEmulator, examples: Path, tiny_code: Path
) -> Iterator[None]:
    """scoring-ep (key): blue 100%, green 0%, tiny 0%; scoring-tok (aml_token): tiny 100%."""
    ml = workspace.ml_client
    endpoints = [
        ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=name, auth_mode=auth))
        for name, auth in ((KEY_ENDPOINT, "key"), (TOKEN_ENDPOINT, "aml_token"))
    ]
    for poller in endpoints:
        poller.result()
    wanted = [
        (KEY_ENDPOINT, "blue", "blue-deployment.yml", None),
        (KEY_ENDPOINT, "green", "green-deployment.yml", None),
        (KEY_ENDPOINT, "tiny", "blue-deployment.yml", tiny_code),
        (TOKEN_ENDPOINT, "tiny", "blue-deployment.yml", tiny_code),
    ]
    pollers = []
    for endpoint, name, yaml_file, code in wanted:
        deployment = load_online_deployment(examples / yaml_file)
        deployment.endpoint_name = endpoint
        deployment.name = name
        if code is not None:
            deployment.code_configuration = CodeConfiguration(
                code=str(code), scoring_script="score.py"
            )
        register_local_assets(emulator.state_dir, deployment)
        pollers.append(ml.online_deployments.begin_create_or_update(deployment))
    for poller in pollers:
        poller.result()
    for endpoint, live in ((KEY_ENDPOINT, "blue"), (TOKEN_ENDPOINT, "tiny")):
        current = ml.online_endpoints.get(endpoint)
        current.traffic = {live: 100}
        ml.online_endpoints.begin_create_or_update(current).result()
    yield
    for name in (KEY_ENDPOINT, TOKEN_ENDPOINT):
        ml.online_endpoints.begin_delete(name).result()


pytestmark = pytest.mark.usefixtures("scene")


def served_by(response: httpx.Response) -> str:
    return response.headers["azureml-model-deployment"]


# --- keys -----------------------------------------------------------------------------------


def test_both_keys_from_list_keys_score_and_the_response_names_the_deployment(
    http: Http,
) -> None:
    keys = http.keys(KEY_ENDPOINT)
    assert set(keys) >= {"primaryKey", "secondaryKey"}
    assert keys["primaryKey"] != keys["secondaryKey"]
    for key in (keys["primaryKey"], keys["secondaryKey"]):
        response = http.score(KEY_ENDPOINT, key)
        assert response.status_code == 200, response.text
        assert served_by(response) == "blue"
        predictions = response.json()
        assert len(predictions) == 2 and all(isinstance(p, float) for p in predictions)


@pytest.mark.parametrize("key_type", ["Primary", "Secondary"])
def test_after_regenerate_keys_the_old_key_is_401_and_the_new_one_works(
    http: Http, key_type: str
) -> None:
    field = f"{key_type.lower()}Key"
    other = "secondaryKey" if field == "primaryKey" else "primaryKey"
    before = http.keys(KEY_ENDPOINT)
    assert http.score(KEY_ENDPOINT, before[field]).status_code == 200
    http.wait(
        http.arm("POST", f"/onlineEndpoints/{KEY_ENDPOINT}/regenerateKeys", {"keyType": key_type})
    )
    after = http.keys(KEY_ENDPOINT)
    assert after[field] != before[field]
    assert after[other] == before[other]
    old = http.score(KEY_ENDPOINT, before[field])
    assert old.status_code == 401, old.text
    assert KEY_ENDPOINT in old.text
    assert http.score(KEY_ENDPOINT, after[field]).status_code == 200
    assert http.score(KEY_ENDPOINT, after[other]).status_code == 200


def test_regenerating_with_the_sdk_changes_the_key(workspace: Workspace, http: Http) -> None:
    # azure-ai-ml sends the key's current value as keyValue; Azure still makes a new key.
    before = http.keys(KEY_ENDPOINT)
    workspace.ml_client.online_endpoints.begin_regenerate_keys(
        KEY_ENDPOINT, key_type="secondary"
    ).result()
    after = http.keys(KEY_ENDPOINT)
    assert after["secondaryKey"] != before["secondaryKey"]
    assert after["primaryKey"] == before["primaryKey"]
    assert http.score(KEY_ENDPOINT, before["secondaryKey"]).status_code == 401
    assert http.score(KEY_ENDPOINT, after["secondaryKey"]).status_code == 200


# --- routing ----------------------------------------------------------------------------------


def test_without_the_header_every_request_goes_by_live_traffic(http: Http) -> None:
    key = http.keys(KEY_ENDPOINT)["primaryKey"]
    served = {served_by(http.score(KEY_ENDPOINT, key)) for _ in range(10)}
    assert served == {"blue"}


def test_the_deployment_header_reaches_a_deployment_at_zero_percent(http: Http) -> None:
    key = http.keys(KEY_ENDPOINT)["primaryKey"]
    blue = http.score(KEY_ENDPOINT, key)
    for header in ("green", "GREEN"):
        green = http.score(KEY_ENDPOINT, key, deployment=header)
        assert green.status_code == 200, green.text
        assert served_by(green) == "green"
        # model-2 is another regressor: the same rows get other predictions.
        assert green.json() != blue.json()


def test_an_unknown_deployment_in_the_header_is_404_naming_it(http: Http) -> None:
    key = http.keys(KEY_ENDPOINT)["primaryKey"]
    response = http.score(KEY_ENDPOINT, key, deployment="purple")
    assert response.status_code == 404
    assert "'purple'" in response.text and KEY_ENDPOINT in response.text


def test_with_all_traffic_at_zero_a_routed_request_is_404(workspace: Workspace, http: Http) -> None:
    ml = workspace.ml_client
    key = http.keys(KEY_ENDPOINT)["primaryKey"]
    endpoint = ml.online_endpoints.get(KEY_ENDPOINT)
    endpoint.traffic = {"blue": 0, "green": 0, "tiny": 0}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    try:
        response = http.score(KEY_ENDPOINT, key)
        assert response.status_code == 404
        assert NO_POSITIVE_WEIGHT in response.text
        # A request that names its deployment is still served.
        direct = http.score(KEY_ENDPOINT, key, deployment="blue")
        assert direct.status_code == 200 and served_by(direct) == "blue"
    finally:
        endpoint = ml.online_endpoints.get(KEY_ENDPOINT)
        endpoint.traffic = {"blue": 100}
        ml.online_endpoints.begin_create_or_update(endpoint).result()
    assert served_by(http.score(KEY_ENDPOINT, key)) == "blue"


# --- aml_token auth ---------------------------------------------------------------------------


def test_an_aml_token_endpoint_takes_its_token_and_refuses_anything_else(http: Http) -> None:
    issued = http.arm("POST", f"/onlineEndpoints/{TOKEN_ENDPOINT}/token")
    assert issued.status_code == 200, issued.text
    token = issued.json()
    assert token["tokenType"] == "Bearer"
    assert token["expiryTimeUtc"] > time.time()
    response = http.score(TOKEN_ENDPOINT, token["accessToken"], json={"x": 1})
    assert response.status_code == 200, response.text
    assert served_by(response) == "tiny"
    assert response.json() == {"ok": True, "echo": {"x": 1}}

    key_like = secrets.token_urlsafe(32)
    refused = http.score(TOKEN_ENDPOINT, key_like, json={"x": 1})
    assert refused.status_code == 401
    assert TOKEN_ENDPOINT in refused.text
    # A key of a key-auth endpoint is not a token, and a token is not a key.
    assert http.score(TOKEN_ENDPOINT, http.keys(KEY_ENDPOINT)["primaryKey"]).status_code == 401
    assert http.score(KEY_ENDPOINT, token["accessToken"]).status_code == 401
    # A token whose signature was tampered with is refused.
    tampered = token["accessToken"][:-1] + ("0" if token["accessToken"][-1] != "0" else "1")
    assert http.score(TOKEN_ENDPOINT, tampered, json={"x": 1}).status_code == 401


# --- model errors -----------------------------------------------------------------------------


def test_a_score_py_error_is_424_with_the_model_error_headers(http: Http) -> None:
    key = http.keys(KEY_ENDPOINT)["primaryKey"]
    ok = http.score(KEY_ENDPOINT, key, json={"fail": False}, deployment="tiny")
    assert ok.status_code == 200, ok.text

    failed = http.score(KEY_ENDPOINT, key, json={"fail": True}, deployment="tiny")
    assert failed.status_code == 424, failed.text
    assert served_by(failed) == "tiny"
    assert failed.headers["ms-azureml-model-error-statuscode"] == "500"
    assert failed.json()["message"].startswith("An unexpected error occurred in scoring script")
    assert "boom" not in failed.text  # the traceback goes to the logs, not to the client


def test_a_malformed_json_body_is_passed_to_score_py(http: Http) -> None:
    key = http.keys(KEY_ENDPOINT)["primaryKey"]
    response = http.score(KEY_ENDPOINT, key, content=b'{"data": [[1, 2,')
    # model-1's run() parses the body itself and raises ValueError: the emulator did not
    # reject the body, score.py did.
    assert response.status_code == 424, response.text
    assert served_by(response) == "blue"
    assert response.headers["ms-azureml-model-error-statuscode"] == "500"
    assert response.headers["x-ms-run-function-failed"] == "True"


# --- the inference server's contract, through the endpoint -----------------------------------


def _send(http: Http, method: str, url: str, **headers: str) -> httpx.Response:
    key = http.keys(KEY_ENDPOINT)["primaryKey"]
    auth = {"Authorization": f"Bearer {key}", "azureml-model-deployment": "tiny"}
    return httpx.request(
        method,
        url,
        json=SAMPLE if method == "POST" else None,
        headers={**auth, **headers},
        verify=http.verify,
        timeout=30,
    )


def test_the_clients_request_ids_go_to_the_model_and_come_back(http: Http) -> None:
    ids = {"x-request-id": "trace-7", "x-ms-client-request-id": "client-7"}
    response = _send(http, "POST", http.scoring_uri(KEY_ENDPOINT), **ids)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "trace-7"
    assert response.headers["x-ms-client-request-id"] == "client-7"
    assert response.headers["x-ms-request-id"] == "client-7"  # azmlinfsrv's legacy id
    assert response.headers["x-ms-run-function-failed"] == "False"
    assert float(response.headers["x-ms-run-fn-exec-ms"]) >= 0


def test_a_get_of_the_scoring_uri_reaches_run_with_the_query(http: Http) -> None:
    response = _send(http, "GET", http.scoring_uri(KEY_ENDPOINT) + "?a=1&b=[2,3]")
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "echo": {"a": 1, "b": [2, 3]}}
    assert _send(http, "PUT", http.scoring_uri(KEY_ENDPOINT)).status_code == 405


def test_the_swagger_uri_answers_with_the_deployments_swagger(http: Http) -> None:
    endpoint = http.arm("GET", f"/onlineEndpoints/{KEY_ENDPOINT}").json()["properties"]
    uri = endpoint["swaggerUri"]
    assert uri == endpoint["scoringUri"].removesuffix("/score") + "/swagger.json"
    swagger = _send(http, "GET", uri)
    assert swagger.status_code == 200, swagger.text
    assert swagger.json()["swagger"] == "2.0"
    assert served_by(swagger) == "tiny"
    v3 = _send(http, "GET", uri + "?version=3")
    assert v3.json()["openapi"].startswith("3.0")
    # a key is needed, as for scoring
    assert httpx.get(uri, verify=http.verify, timeout=30).status_code == 401


def test_a_model_error_is_an_http_response_error_in_azure_ai_ml(
    workspace: Workspace, tmp_path: Path
) -> None:
    request = tmp_path / "fail.json"
    request.write_text('{"fail": true}')
    with pytest.raises(HttpResponseError) as raised:
        sdk_invoke(workspace.ml_client, KEY_ENDPOINT, request, deployment="tiny")
    assert raised.value.status_code == 424
