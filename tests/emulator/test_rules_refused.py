"""Every one of Azure's rules is refused through the real SDK, and a refusal changes nothing.

Each refused change is sent with azure-ai-ml's MLClient (and, where the SDK would refuse it
itself before sending, also with plain httpx so the emulator's own check is proven). After
each refusal the endpoint's traffic and mirror, its deployments' instance counts and the
answer of a scoring call must be what they were before.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.ml import load_online_deployment
from azure.ai.ml.entities import ManagedOnlineEndpoint
from azure.ai.ml.exceptions import MlException
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from emulator.apply import register_local_assets
from rollout.workspace import Workspace, connect_emulator
from tests.conftest import RunningEmulator, sdk_invoke

ENDPOINT = "refused-ep"
DEPLOYMENTS = ("blue", "green", "gray")
BASE_TRAFFIC = {"blue": 100, "green": 0, "gray": 0}
BASE_MIRROR = {"green": 10}
# MLClient's get fills 0 for each deployment without live traffic, except the mirror target.
SEEN_TRAFFIC = {"blue": 100, "gray": 0}
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
BAD_NAMES = {
    "too-short": "ab",
    "leading-digit": "1abc",
    "double-dash": "bad--name",
    "33-characters": "a" * 33,
}


@dataclass(frozen=True)
class Snapshot:
    """What a refused change must leave exactly as it was."""

    traffic: dict[str, int]
    mirror: dict[str, int]
    deployments: dict[str, tuple[int, str]]
    served_by: str
    prediction: Any


@dataclass
class Setup:
    workspace: Workspace
    emulator: RunningEmulator
    examples: Path

    @property
    def ml(self) -> Any:
        return self.workspace.ml_client

    @property
    def verify(self) -> str:
        assert self.emulator.facts is not None
        return self.emulator.facts.ca_cert

    def arm(self, path: str = "") -> str:
        facts = self.emulator.facts
        assert facts is not None
        return (
            f"{facts.arm_url}/subscriptions/{facts.subscription_id}/resourceGroups/"
            f"{facts.resource_group}/providers/Microsoft.MachineLearningServices/workspaces/"
            f"{facts.workspace_name}{path}?api-version=2023-04-01"
        )

    def arm_headers(self) -> dict[str, str]:
        assert self.emulator.facts is not None
        return {"Authorization": f"Bearer {self.emulator.facts.token}"}

    def score(self, key: str | None = None, **headers: str) -> httpx.Response:
        key = key if key is not None else self.ml.online_endpoints.get_keys(ENDPOINT).primary_key
        uri = self.ml.online_endpoints.get(ENDPOINT).scoring_uri
        return httpx.post(
            uri,
            json=SAMPLE,
            headers={"Authorization": f"Bearer {key}", **headers},
            verify=self.verify,
            timeout=30,
        )

    def snapshot(self) -> Snapshot:
        endpoint = self.ml.online_endpoints.get(ENDPOINT)
        deployments = {
            d.name: (d.instance_count, d.provisioning_state)
            for d in self.ml.online_deployments.list(ENDPOINT)
        }
        answer = self.score()
        assert answer.status_code == 200, answer.text
        return Snapshot(
            traffic=dict(endpoint.traffic),
            mirror=dict(endpoint.mirror_traffic or {}),
            deployments=deployments,
            served_by=answer.headers["azureml-model-deployment"],
            prediction=answer.json(),
        )


@pytest.fixture(scope="module")
def setup(workspace: Workspace, emulator: RunningEmulator, examples: Path) -> Iterator[Setup]:
    ml = workspace.ml_client
    ml.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name=ENDPOINT, auth_mode="key")
    ).result()
    pollers = []
    for name in DEPLOYMENTS:
        deployment = load_online_deployment(examples / "blue-deployment.yml")
        deployment.endpoint_name = ENDPOINT
        deployment.name = name
        register_local_assets(emulator.state_dir, deployment)
        pollers.append(ml.online_deployments.begin_create_or_update(deployment))
    for poller in pollers:
        poller.result()
    endpoint = ml.online_endpoints.get(ENDPOINT)
    endpoint.traffic = dict(BASE_TRAFFIC)
    endpoint.mirror_traffic = dict(BASE_MIRROR)
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    yield Setup(workspace, emulator, examples)
    ml.online_endpoints.begin_delete(ENDPOINT).result()


@pytest.fixture
def before(setup: Setup) -> Snapshot:
    """The state before a test tries to break a rule; the test must leave it unchanged."""
    snap = setup.snapshot()
    assert snap.traffic == SEEN_TRAFFIC
    assert snap.mirror == BASE_MIRROR
    assert snap.deployments == {name: (1, "Succeeded") for name in DEPLOYMENTS}
    assert snap.served_by == "blue"
    return snap


def assert_unchanged(setup: Setup, before: Snapshot) -> None:
    assert setup.snapshot() == before


def assert_azure_error(response: httpx.Response, status: int, *names: str) -> str:
    """Azure's error shape {"error": {"code", "message"}}; the message names what it refuses."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    message = error["message"]
    assert isinstance(message, str)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


# --- live and mirror traffic ------------------------------------------------------------


TRAFFIC_CASES = {
    "sum-90": ({"blue": 90}, BASE_MIRROR, ["'refused-ep'", "sums to 90"]),
    "sum-110": ({"blue": 100, "gray": 10}, BASE_MIRROR, ["'refused-ep'", "sums to 110"]),
    "negative": ({"blue": 100, "gray": -10}, BASE_MIRROR, ["'gray'", "'refused-ep'", "-10"]),
    "unknown-deployment": (
        {"blue": 50, "nope": 50},
        BASE_MIRROR,
        ["'nope'", "'refused-ep'", "does not have"],
    ),
    "mirror-60": ({"blue": 100}, {"green": 60}, ["'green'", "'refused-ep'", "60"]),
    "mirror-to-two-deployments": (
        {"blue": 100},
        {"green": 10, "gray": 10},
        ["'green'", "'gray'", "'refused-ep'", "only one deployment"],
    ),
    "mirror-to-a-live-deployment": (
        {"blue": 100},
        {"blue": 10},
        ["'blue'", "'refused-ep'", "100% live traffic"],
    ),
}


@pytest.mark.parametrize(
    ("traffic", "mirror", "named"), TRAFFIC_CASES.values(), ids=TRAFFIC_CASES.keys()
)
def test_traffic_that_breaks_a_rule_is_refused_and_changes_nothing(
    setup: Setup,
    before: Snapshot,
    traffic: dict[str, int],
    mirror: dict[str, int],
    named: list[str],
) -> None:
    endpoint = setup.ml.online_endpoints.get(ENDPOINT)
    endpoint.traffic = traffic
    endpoint.mirror_traffic = mirror
    with pytest.raises(HttpResponseError) as caught:
        setup.ml.online_endpoints.begin_create_or_update(endpoint).result()
    assert caught.value.status_code == 400
    message = str(caught.value)
    for name in named:
        assert name in message, f"{name!r} not in {message!r}"
    assert_unchanged(setup, before)


def test_traffic_keys_are_compared_case_insensitively_as_the_sdk_lower_cases_them(
    setup: Setup, before: Snapshot
) -> None:
    endpoint = setup.ml.online_endpoints.get(ENDPOINT)
    endpoint.traffic = {"BLUE": 90}
    with pytest.raises(HttpResponseError) as caught:
        setup.ml.online_endpoints.begin_create_or_update(endpoint).result()
    assert "sums to 90" in str(caught.value)
    assert_unchanged(setup, before)


# --- deleting -----------------------------------------------------------------------------


def test_deleting_a_live_deployment_is_refused_and_it_keeps_serving(
    setup: Setup, before: Snapshot
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        setup.ml.online_deployments.begin_delete("blue", ENDPOINT).result()
    assert caught.value.status_code == 400
    message = str(caught.value)
    assert "'blue'" in message and "'refused-ep'" in message and "100% live traffic" in message
    assert setup.ml.online_deployments.get("blue", ENDPOINT).provisioning_state == "Succeeded"
    assert_unchanged(setup, before)


def test_deleting_the_mirror_target_is_refused(setup: Setup, before: Snapshot) -> None:
    with pytest.raises(HttpResponseError) as caught:
        setup.ml.online_deployments.begin_delete("green", ENDPOINT).result()
    assert caught.value.status_code == 400
    assert "'green'" in str(caught.value) and "mirror traffic" in str(caught.value)
    assert_unchanged(setup, before)


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_bad_endpoint_name_is_refused_by_the_sdk_or_the_emulator(
    setup: Setup, before: Snapshot, bad: str
) -> None:
    with pytest.raises((HttpResponseError, MlException)) as caught:
        setup.ml.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name=bad, auth_mode="key")
        ).result()
    if isinstance(caught.value, HttpResponseError):
        # The SDK let it through; the emulator refused it and said which name.
        assert caught.value.status_code == 400
        assert repr(bad) in str(caught.value)
    else:
        assert "name for an endpoint" in str(caught.value)
    with pytest.raises(ResourceNotFoundError):
        setup.ml.online_endpoints.get(bad)
    assert_unchanged(setup, before)


@pytest.mark.parametrize("bad", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_the_emulator_itself_refuses_a_bad_endpoint_name(setup: Setup, bad: str) -> None:
    body = {"location": "local", "properties": {"authMode": "Key"}}
    response = httpx.put(
        setup.arm(f"/onlineEndpoints/{bad}"),
        json=body,
        headers=setup.arm_headers(),
        verify=setup.verify,
    )
    message = assert_azure_error(response, 400, repr(bad))
    assert "endpoint name" in message
    gone = httpx.get(
        setup.arm(f"/onlineEndpoints/{bad}"), headers=setup.arm_headers(), verify=setup.verify
    )
    assert gone.status_code == 404


@pytest.mark.parametrize("bad", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_bad_deployment_name_is_refused_by_the_sdk_or_the_emulator(
    setup: Setup, before: Snapshot, bad: str
) -> None:
    deployment = load_online_deployment(setup.examples / "blue-deployment.yml")
    deployment.endpoint_name = ENDPOINT
    deployment.name = bad
    register_local_assets(setup.emulator.state_dir, deployment)
    with pytest.raises((HttpResponseError, MlException)) as caught:
        setup.ml.online_deployments.begin_create_or_update(deployment).result()
    if isinstance(caught.value, HttpResponseError):
        assert caught.value.status_code == 400
        assert repr(bad) in str(caught.value)
    else:
        assert "name for a deployment" in str(caught.value)
    assert_unchanged(setup, before)


@pytest.mark.parametrize("bad", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_the_emulator_itself_refuses_a_bad_deployment_name(
    setup: Setup, before: Snapshot, bad: str
) -> None:
    # A body the emulator would accept under a good name: blue's own, as GET returns it.
    body = httpx.get(
        setup.arm(f"/onlineEndpoints/{ENDPOINT}/deployments/blue"),
        headers=setup.arm_headers(),
        verify=setup.verify,
    ).json()
    response = httpx.put(
        setup.arm(f"/onlineEndpoints/{ENDPOINT}/deployments/{bad}"),
        json={k: body[k] for k in ("location", "sku", "kind", "properties")},
        headers=setup.arm_headers(),
        verify=setup.verify,
    )
    message = assert_azure_error(response, 400, repr(bad))
    assert "deployment name" in message
    assert_unchanged(setup, before)


# --- instance count -----------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 51])
def test_an_instance_count_outside_1_to_50_is_refused(
    setup: Setup, before: Snapshot, count: int
) -> None:
    deployment = setup.ml.online_deployments.get("blue", ENDPOINT)
    deployment.instance_count = count
    with pytest.raises(HttpResponseError) as caught:
        setup.ml.online_deployments.begin_create_or_update(deployment).result()
    assert caught.value.status_code == 400
    message = str(caught.value)
    assert "'blue'" in message and "'refused-ep'" in message
    assert f"is {count}; it must be a whole number from 1 to 50" in message
    assert_unchanged(setup, before)


@pytest.mark.parametrize("count", [0, 51])
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_the_emulator_itself_refuses_an_instance_count_outside_1_to_50(
    setup: Setup, before: Snapshot, count: int, method: str
) -> None:
    url = setup.arm(f"/onlineEndpoints/{ENDPOINT}/deployments/blue")
    if method == "PUT":
        current = httpx.get(url, headers=setup.arm_headers(), verify=setup.verify).json()
        body = {k: current[k] for k in ("location", "sku", "kind", "properties")}
        body["sku"] = {**body["sku"], "capacity": count}
    else:
        body = {"sku": {"capacity": count}}
    response = httpx.request(
        method, url, json=body, headers=setup.arm_headers(), verify=setup.verify
    )
    assert_azure_error(response, 400, "'blue'", "'refused-ep'", f"is {count};")
    assert_unchanged(setup, before)


# --- the ARM token --------------------------------------------------------------------------


def test_an_mlclient_with_a_wrong_token_is_refused_with_401(setup: Setup, before: Snapshot) -> None:
    assert setup.emulator.facts is not None
    wrong = connect_emulator(facts=dataclasses.replace(setup.emulator.facts, token="not-it"))
    with pytest.raises(ClientAuthenticationError) as caught:
        wrong.ml_client.online_endpoints.get(ENDPOINT)
    assert caught.value.status_code == 401
    # A change sent with the wrong token is refused before anything is looked at.
    endpoint = setup.ml.online_endpoints.get(ENDPOINT)
    endpoint.traffic = {"blue": 0, "green": 0, "gray": 100}
    endpoint.mirror_traffic = {}
    with pytest.raises(ClientAuthenticationError):
        wrong.ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    with pytest.raises(ClientAuthenticationError):
        wrong.ml_client.online_endpoints.get_keys(ENDPOINT)
    assert_unchanged(setup, before)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-the-token", "Bearer", "Basic dXNlcjpwYXNz", "not-the-token"],
    ids=["missing", "wrong-token", "empty-token", "basic-auth", "no-scheme"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", f"/onlineEndpoints/{ENDPOINT}"),
        ("POST", f"/onlineEndpoints/{ENDPOINT}/listKeys"),
    ],
    ids=["workspace", "endpoint", "list-keys"],
)
def test_arm_calls_without_the_right_bearer_token_are_401(
    setup: Setup, authorization: str | None, method: str, path: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.request(method, setup.arm(path), headers=headers, verify=setup.verify)
    assert_azure_error(response, 401, "Authorization")
    assert "primaryKey" not in response.text


# --- the scoring key ------------------------------------------------------------------------


def test_a_wrong_scoring_key_is_401_and_the_right_one_still_works(
    setup: Setup, before: Snapshot
) -> None:
    assert setup.emulator.facts is not None
    keys = setup.ml.online_endpoints.get_keys(ENDPOINT)
    for wrong in ("not-a-key", keys.primary_key[:-1], setup.emulator.facts.token):
        response = setup.score(wrong)
        assert response.status_code == 401, response.text
        assert "'refused-ep'" in response.text
    uri = setup.ml.online_endpoints.get(ENDPOINT).scoring_uri
    missing = httpx.post(uri, json=SAMPLE, verify=setup.verify)
    assert missing.status_code == 401
    # The SDK's own invoke reads the key with listKeys and gets the same answer as curl.
    answer = sdk_invoke(setup.ml, ENDPOINT, setup.examples / "sample-request.json")
    assert json.loads(answer) == before.prediction
    assert_unchanged(setup, before)
