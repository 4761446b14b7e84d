"""Hostile and careless control-plane input: every bad request is a clear 4xx, and changes nothing.

Each case sends one malformed request with plain httpx (the SDK would refuse most of them
before sending) to an endpoint that serves traffic, then checks the status, that the
message names the thing and the value, and that the endpoint, its deployments, the asset
files in the state directory and a scoring answer are exactly what they were before.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.apply import apply_file
from tests.conftest import RunningEmulator, example_yaml

ENDPOINT = "hostile-ep"
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}


@dataclass
class Client:
    emulator: RunningEmulator

    @property
    def facts(self) -> Any:
        assert self.emulator.facts is not None
        return self.emulator.facts

    def url(self, path: str) -> str:
        f = self.facts
        return (
            f"{f.arm_url}/subscriptions/{f.subscription_id}/resourceGroups/{f.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{f.workspace_name}{path}"
            "?api-version=2023-04-01-preview"
        )

    def request(
        self, method: str, path: str, body: Any = None, *, content: bytes | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.facts.token}"}
        if content is None and body is not None:
            content = json.dumps(body).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        return httpx.request(
            method,
            self.url(path),
            content=content,
            headers=headers,
            verify=self.facts.ca_cert,
            timeout=60,
        )

    def wait(self, response: httpx.Response, timeout: float = 120) -> dict[str, Any]:
        """Poll an operation to its end; returns its final status document."""
        url = response.headers["Azure-AsyncOperation"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = httpx.get(
                url,
                headers={"Authorization": f"Bearer {self.facts.token}"},
                verify=self.facts.ca_cert,
                timeout=30,
            ).json()
            if status["status"] != "InProgress":
                return dict(status)
            time.sleep(0.1)
        raise AssertionError(f"operation {url} still in progress after {timeout} s")

    def scorer(self) -> Callable[[], httpx.Response]:
        """A scoring call with the endpoint's URI and key read once."""
        endpoint = self.request("GET", f"/onlineEndpoints/{ENDPOINT}").json()
        keys = self.request("POST", f"/onlineEndpoints/{ENDPOINT}/listKeys").json()
        http = httpx.Client(verify=self.facts.ca_cert, timeout=30)
        headers = {"Authorization": f"Bearer {keys['primaryKey']}"}
        uri = endpoint["properties"]["scoringUri"]
        return lambda: http.post(uri, json=SAMPLE, headers=headers)

    def score(self) -> httpx.Response:
        return self.scorer()()

    def snapshot(self) -> dict[str, Any]:
        """What a refused request must leave exactly as it was."""
        endpoint = self.request("GET", f"/onlineEndpoints/{ENDPOINT}").json()
        deployments = self.request("GET", f"/onlineEndpoints/{ENDPOINT}/deployments").json()
        answer = self.score()
        assert answer.status_code == 200, answer.text
        state = self.emulator.state_dir
        return {
            "endpoint": endpoint,
            "deployments": deployments["value"],
            "files": sorted(str(p.relative_to(state)) for p in (state / "assets").rglob("*")),
            "state.db": (state / "state.db").is_file(),
            "answer": (answer.headers["azureml-model-deployment"], answer.json()),
        }


@pytest.fixture(scope="module")
def client(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("hostile")
    apply_file(emulator.state_dir, example_yaml("endpoint", folder, name=ENDPOINT))
    blue = example_yaml("blue-deployment", folder, endpoint_name=ENDPOINT)
    apply_file(emulator.state_dir, blue, all_traffic=True)
    c = Client(emulator)
    yield c
    c.wait(c.request("DELETE", f"/onlineEndpoints/{ENDPOINT}"))


@pytest.fixture(scope="module")
def blue_body(client: Client) -> dict[str, Any]:
    """A deployment body as the SDK would send it, taken from blue as it is stored."""
    doc = client.request("GET", f"/onlineEndpoints/{ENDPOINT}/deployments/blue").json()
    props = {k: v for k, v in doc["properties"].items() if k != "provisioningState"}
    return {"location": doc["location"], "sku": doc["sku"], "properties": props}


def _with(body: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {**body, "properties": {**body["properties"], **props}}


def _nested(depth: int) -> bytes:
    return ('{"properties": ' + "[" * depth + "]" * depth + "}").encode()


def refused(client: Client, method: str, path: str, body: Any = None, **kw: Any) -> str:
    before = client.snapshot()
    response = client.request(method, path, body, **kw)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert client.snapshot() == before
    return str(error["message"])


# 1. asset names and versions are never paths

ASSET_PATHS = [
    ("models", "%2e%2e", "%2e%2e"),
    ("models", "model-1", "%2e%2e"),
    ("models", "model-1", "%2e"),
    ("models", "%2e", "1"),
    ("codes", "%2e%2e", "1"),
    ("codes", "anything", "%2e%2e"),
    ("environments", "%2e%2e", "%2e%2e"),
    ("models", "a%20b", "1"),
    ("models", "-leading-dash", "1"),
    ("models", "x" * 300, "1"),
    ("models", "ok", "v" * 70),
]


@pytest.mark.parametrize(("kind", "name", "version"), ASSET_PATHS)
def test_asset_names_and_versions_that_are_paths_are_refused(
    client: Client, kind: str, name: str, version: str, examples: Path
) -> None:
    source = (examples / "model-1" / "model").as_uri()
    uri_field = {"models": "modelUri", "codes": "codeUri"}.get(kind, "image")
    body = {"properties": {uri_field: source}}
    message = refused(client, "PUT", f"/{kind}/{name}/versions/{version}", body)
    assert "not valid" in message
    decoded = [v.replace("%2e", ".").replace("%20", " ")[:40] for v in (name, version)]
    assert any(f"'{v}" in message for v in decoded), message


def test_a_refused_asset_path_leaves_the_state_directory_whole(client: Client) -> None:
    state = client.emulator.state_dir
    before = sorted(p.name for p in state.iterdir())
    client.request("PUT", "/models/%2e%2e/versions/%2e%2e", {"properties": {"modelUri": "/"}})
    assert sorted(p.name for p in state.iterdir()) == before
    assert (state / "state.db").is_file()


def test_a_source_that_holds_the_state_directory_is_refused(client: Client) -> None:
    message = refused(
        client, "PUT", "/models/whole-disk/versions/1", {"properties": {"modelUri": "file:///"}}
    )
    assert "state directory" in message


def test_a_source_inside_the_state_directory_is_refused(client: Client) -> None:
    inside = (client.emulator.state_dir / "assets").as_uri()
    message = refused(client, "PUT", "/codes/loop/versions/1", {"properties": {"codeUri": inside}})
    assert "inside the emulator's state directory" in message


# 2 and 9: wrong types are refused before anything is accepted


def deployment_cases(blue: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """name -> (what the message must quote, body), each for a PUT of blue."""
    return {
        "environmentVariables as a string": ("'A=B'", _with(blue, environmentVariables="A=B")),
        "scoringScript as a number": (
            "42",
            _with(
                blue,
                codeConfiguration={**blue["properties"]["codeConfiguration"], "scoringScript": 42},
            ),
        ),
        "properties as a string": ("'abc'", {**blue, "properties": "abc"}),
        "properties as a list": ("[1, 2]", {**blue, "properties": [1, 2]}),
        "inner properties as a list": ("['x']", _with(blue, properties=["x"])),
        "requestSettings as a string": ("'fast'", _with(blue, requestSettings="fast")),
        "sku as a string": ("'big'", {**blue, "sku": "big"}),
        "capacity as a string": ("'3'", {**blue, "sku": {"name": "Default", "capacity": "3"}}),
        "livenessProbe as a list": ("[]", _with(blue, livenessProbe=[])),
        "failureThreshold as text": (
            "'abc'",
            _with(blue, livenessProbe={"failureThreshold": "abc"}),
        ),
        "failureThreshold 0": ("0", _with(blue, readinessProbe={"failureThreshold": 0})),
        "probe period under a second": (
            "'PT0.01S'",
            _with(blue, livenessProbe={"period": "PT0.01S"}),
        ),
        "a 400-digit requestTimeout": (
            "requestTimeout",
            _with(blue, requestSettings={"requestTimeout": "PT" + "9" * 400 + "S"}),
        ),
        "a duration over a day": ("'P2D'", _with(blue, requestSettings={"requestTimeout": "P2D"})),
        "requestTimeout not a duration": (
            "'5 seconds'",
            _with(blue, requestSettings={"requestTimeout": "5 seconds"}),
        ),
        "maxConcurrentRequestsPerInstance 0": (
            "0",
            _with(blue, requestSettings={"maxConcurrentRequestsPerInstance": 0}),
        ),
        "maxConcurrentRequestsPerInstance true": (
            "True",
            _with(blue, requestSettings={"maxConcurrentRequestsPerInstance": True}),
        ),
        "a NUL in an environment value": (
            "NUL",
            _with(blue, environmentVariables={"A": "x\x00y"}),
        ),
        "an empty environment variable name": ("''", _with(blue, environmentVariables={"": "x"})),
        "an '=' in an environment variable name": (
            "'A=B'",
            _with(blue, environmentVariables={"A=B": "x"}),
        ),
        "an environment value as a number": ("5", _with(blue, environmentVariables={"A": 5})),
        "appInsightsEnabled as text": ("'yes'", _with(blue, appInsightsEnabled="yes")),
        "egress neither Enabled nor Disabled": (
            "'Sometimes'",
            _with(blue, egressPublicNetworkAccess="Sometimes"),
        ),
        "tags as a list": ("['a']", {**blue, "tags": ["a"]}),
        "a tag value of 300 characters": ("300", {**blue, "tags": {"t": "v" * 300}}),
        "51 tags": ("51", {**blue, "tags": {f"t{i}": "v" for i in range(51)}}),
        "a description of 2000 characters": ("2,000", _with(blue, description="d" * 2000)),
        "scoringScript escaping the code folder": (
            "'../../x.py'",
            _with(
                blue,
                codeConfiguration={
                    **blue["properties"]["codeConfiguration"],
                    "scoringScript": "../../x.py",
                },
            ),
        ),
        "scoringScript as an absolute path": (
            "'/etc/passwd'",
            _with(
                blue,
                codeConfiguration={
                    **blue["properties"]["codeConfiguration"],
                    "scoringScript": "/etc/passwd",
                },
            ),
        ),
        "scoringScript missing from the code folder": (
            "'nope.py'",
            _with(
                blue,
                codeConfiguration={
                    **blue["properties"]["codeConfiguration"],
                    "scoringScript": "nope.py",
                },
            ),
        ),
    }


CASE_NAMES = list(deployment_cases({"properties": {"codeConfiguration": {}}}))


@pytest.mark.parametrize("case", CASE_NAMES)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_malformed_deployment_body_is_refused_and_names_the_value(
    client: Client, blue_body: dict[str, Any], case: str, method: str
) -> None:
    quoted, body = deployment_cases(blue_body)[case]
    if method == "PATCH" and case.startswith("scoringScript missing"):
        pytest.skip("a PATCH keeps the stored code configuration")
    message = refused(client, method, f"/onlineEndpoints/{ENDPOINT}/deployments/blue", body)
    assert quoted in message, message
    if not case.startswith("51 tags"):
        assert "'blue'" in message and f"'{ENDPOINT}'" in message, message


def endpoint_cases() -> dict[str, tuple[str, Any]]:
    return {
        "properties as a string": ("'abc'", {"location": "local", "properties": "abc"}),
        "properties as a list": ("[1]", {"properties": [1]}),
        "inner properties as a string": (
            "'x'",
            {"properties": {"authMode": "Key", "properties": "x"}},
        ),
        "traffic as a list": ("['blue']", {"properties": {"authMode": "Key", "traffic": ["blue"]}}),
        "a traffic value as text": (
            "'100'",
            {"properties": {"authMode": "Key", "traffic": {"blue": "100"}}},
        ),
        "authMode as a number": ("7", {"properties": {"authMode": 7}}),
        "a description of 64 KiB": (
            "65,536",
            {"properties": {"authMode": "Key", "description": "d" * 65536}},
        ),
        "tags as a string": ("'t'", {"tags": "t", "properties": {"authMode": "Key"}}),
        "publicNetworkAccess unknown": (
            "'Open'",
            {"properties": {"authMode": "Key", "publicNetworkAccess": "Open"}},
        ),
    }


@pytest.mark.parametrize("case", list(endpoint_cases()))
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_malformed_endpoint_body_is_refused_and_names_the_value(
    client: Client, case: str, method: str
) -> None:
    quoted, body = endpoint_cases()[case]
    message = refused(client, method, f"/onlineEndpoints/{ENDPOINT}", body)
    assert quoted in message, message
    assert f"'{ENDPOINT}'" in message, message


@pytest.mark.parametrize(
    ("what", "content"),
    [
        ("not JSON", b"{nope"),
        ("a JSON list", b"[1, 2]"),
        ("nested 100 deep", _nested(100)),
        ("nested 100,000 deep", _nested(100_000)),
    ],
)
def test_a_body_that_is_not_a_bounded_json_object_is_refused(
    client: Client, what: str, content: bytes
) -> None:
    refused(client, "PUT", f"/onlineEndpoints/{ENDPOINT}", content=content)
    refused(client, "PATCH", f"/onlineEndpoints/{ENDPOINT}/deployments/blue", content=content)


def test_a_body_over_4_mib_is_413(client: Client) -> None:
    content = json.dumps({"properties": {"description": "d" * (5 * 2**20)}}).encode()
    before = client.snapshot()
    response = client.request("PUT", f"/onlineEndpoints/{ENDPOINT}", content=content)
    assert response.status_code == 413
    assert "4 MiB" in response.json()["error"]["message"]
    assert client.snapshot() == before


# 2: a failure after acceptance ends the operation, never a stuck deployment


def test_a_failure_after_acceptance_ends_the_operation_failed(
    client: Client, blue_body: dict[str, Any]
) -> None:
    endpoint = "stuck-ep"
    state = client.emulator.state_dir
    logs = state / "logs" / endpoint
    created = client.request(
        "PUT",
        f"/onlineEndpoints/{endpoint}",
        {"location": "local", "properties": {"authMode": "Key"}},
    )
    client.wait(created)
    try:
        # The deployment's log folder cannot be made: provisioning fails after the PUT
        # was accepted, outside any check the body could have had.
        shutil.rmtree(logs, ignore_errors=True)
        logs.parent.mkdir(exist_ok=True)
        logs.write_text("not a folder")
        accepted = client.request("PUT", f"/onlineEndpoints/{endpoint}/deployments/blue", blue_body)
        assert accepted.status_code == 201, accepted.text
        status = client.wait(accepted)
        assert status["status"] == "Failed"
        assert "blue" in status["error"]["message"] and endpoint in status["error"]["message"]
        doc = client.request("GET", f"/onlineEndpoints/{endpoint}/deployments/blue").json()
        assert doc["properties"]["provisioningState"] == "Failed"
        # Not stuck: the next change is accepted (and now succeeds).
        logs.unlink()
        again = client.request("PUT", f"/onlineEndpoints/{endpoint}/deployments/blue", blue_body)
        assert again.status_code == 200, again.text
        assert client.wait(again)["status"] == "Succeeded"
    finally:
        if logs.is_file():
            logs.unlink()
        client.wait(client.request("DELETE", f"/onlineEndpoints/{endpoint}"))


# 10: big work never blocks the event loop


def test_scoring_answers_while_a_big_model_is_registered(client: Client, tmp_path: Path) -> None:
    model = tmp_path / "many-files-model"
    for folder in range(40):
        (model / f"part-{folder}").mkdir(parents=True)
        for i in range(200):
            (model / f"part-{folder}" / f"w{i}.bin").write_bytes(bytes([i]) * 4096)
    scoring = client.scorer()
    assert scoring().status_code == 200
    done = threading.Event()
    result: dict[str, httpx.Response] = {}

    def register() -> None:
        body = {"properties": {"modelUri": model.as_uri()}}
        result["put"] = client.request("PUT", "/models/many-files/versions/1", body)
        done.set()

    thread = threading.Thread(target=register)
    thread.start()
    try:
        # The copy has begun once its staging folder exists.
        staging = client.emulator.state_dir / "assets" / "models"
        deadline = time.monotonic() + 60
        while not any(staging.glob(".staging-*")) and time.monotonic() < deadline:
            assert not done.is_set(), "the registration ended before its copy was seen"
            time.sleep(0.002)
        answered_during = 0
        while not done.is_set() and answered_during < 20:
            assert scoring().status_code == 200
            answered_during += int(not done.is_set())
        # A copy on the event loop would hold every answer until it ended (at most one
        # could be counted, racing the registration's own answer).
        assert answered_during >= 5, answered_during
    finally:
        thread.join(120)
    assert result["put"].status_code == 201, result["put"].text
    assert not list(staging.glob(".staging-*"))
    copied = client.emulator.state_dir / "assets" / "models" / "many-files" / "1" / model.name
    assert len(list(copied.rglob("*.bin"))) == 8000


# 9: no input makes a 500 (a bounded fuzz of the fields the emulator reads)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
_DEPLOYMENT_FIELDS = [
    "model",
    "codeConfiguration",
    "environmentVariables",
    "requestSettings",
    "livenessProbe",
    "readinessProbe",
    "scaleSettings",
    "instanceType",
    "properties",
    "description",
    "appInsightsEnabled",
    "endpointComputeType",
]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(_DEPLOYMENT_FIELDS), value=_JSON, sku=_JSON)
def test_no_deployment_body_makes_a_500(client: Client, field: str, value: Any, sku: Any) -> None:
    body = {"sku": sku, "properties": {field: value}}
    response = client.request("PUT", f"/onlineEndpoints/{ENDPOINT}/deployments/fuzz", body)
    assert response.status_code < 500, response.text[:300]
    assert response.status_code != 201, "a body without model and code cannot create a deployment"


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(
        ["authMode", "description", "properties", "traffic", "mirrorTraffic", "publicNetworkAccess"]
    ),
    value=_JSON,
    tags=_JSON,
)
def test_no_endpoint_body_makes_a_500(client: Client, field: str, value: Any, tags: Any) -> None:
    body = {"tags": tags, "properties": {"authMode": "Key", field: value}}
    response = client.request("PATCH", f"/onlineEndpoints/{ENDPOINT}", body)
    assert response.status_code < 500, response.text[:300]
    if response.status_code < 300:
        client.wait(response)
        # Put the tutorial's traffic back if the fuzz found a valid change.
        restore = {
            "properties": {"traffic": {"blue": 100}, "mirrorTraffic": {}, "description": None},
            "tags": {},
        }
        client.wait(client.request("PATCH", f"/onlineEndpoints/{ENDPOINT}", restore))


def test_an_asset_over_the_size_limit_is_refused_and_the_limit_is_kept(
    emulator_factory: Callable[[str], RunningEmulator], tmp_path: Path
) -> None:
    own = emulator_factory("asset-limit")
    own.start(args=("--max-asset-mb", "1"))
    model = tmp_path / "two-mib"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * (2 * 2**20))
    small = tmp_path / "small"
    small.mkdir()
    (small / "weights.bin").write_bytes(b"w" * 1024)
    try:
        for restart in (False, True):
            if restart:
                own.stop()
                own.start()  # no flag: the limit was kept in the state directory
            c = Client(own)
            body = {"properties": {"modelUri": model.as_uri()}}
            response = c.request("PUT", "/models/too-big/versions/1", body)
            assert response.status_code == 400, response.text
            message = response.json()["error"]["message"]
            assert "1 MiB" in message and str(model) in message and "--max-asset-mb" in message
            assert c.request("GET", "/models/too-big/versions/1").status_code == 404
            assert not (own.state_dir / "assets" / "models" / "too-big").exists()
        ok = c.request(
            "PUT", "/models/small/versions/1", {"properties": {"modelUri": small.as_uri()}}
        )
        assert ok.status_code == 201, ok.text
    finally:
        own.stop()
