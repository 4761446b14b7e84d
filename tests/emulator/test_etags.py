"""ETags and If-Match on endpoints and deployments, with plain HTTPS as curl would send them.

A GET answers the resource's ETag; a PUT or PATCH whose If-Match is not the current ETag is
refused with 412 and changes nothing; a matching If-Match (or `*` on a resource that exists)
is accepted; without If-Match a write is unconditional, as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningEmulator, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "etag-ep"
DEPLOYMENT = f"/onlineEndpoints/{ENDPOINT}/deployments/green"


@dataclass
class Arm:
    url: str
    token: str
    verify: str

    def call(
        self, method: str, path: str, body: Any = None, *, if_match: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if if_match is not None:
            headers["If-Match"] = if_match
        return httpx.request(
            method,
            self.url + path,
            params={"api-version": "2023-04-01-preview"},
            json=body,
            headers=headers,
            verify=self.verify,
            timeout=30,
        )

    def get(self, path: str) -> tuple[str, dict[str, Any]]:
        response = self.call("GET", path)
        assert response.status_code == 200, response.text
        return response.headers["ETag"], dict(response.json())

    def settled(self, path: str) -> tuple[str, dict[str, Any]]:
        """The resource once its operation is over (bounded: 60 s)."""
        deadline = time.monotonic() + 60
        while True:
            tag, doc = self.get(path)
            state = doc["properties"]["provisioningState"]
            if state in ("Succeeded", "Failed") or time.monotonic() > deadline:
                assert state == "Succeeded", doc
                return tag, doc
            time.sleep(0.2)


@pytest.fixture(scope="module")
def arm(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Arm]:
    seed_tutorial_endpoint(emulator, ENDPOINT, tmp_path_factory.mktemp("etag-ep"))
    facts = emulator.facts
    assert facts is not None
    scope = (
        f"/subscriptions/{facts.subscription_id}/resourceGroups/{facts.resource_group}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{facts.workspace_name}"
    )
    yield Arm(facts.arm_url.rstrip("/") + scope, facts.token, facts.ca_cert)


def _with(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k in ("location", "kind", "tags", "sku")}
    body["properties"] = dict(doc["properties"])
    for key, value in changes.items():
        if key in ("traffic", "mirrorTraffic"):
            body["properties"][key] = value
        else:
            body[key] = value
    return body


def _refused(response: httpx.Response, *names: str) -> str:
    assert response.status_code == 412, response.text
    error = response.json()["error"]
    assert error["code"] == "PreconditionFailed"
    message = str(error["message"])
    for name in names:
        assert f"'{name}'" in message, message
    assert "read it again" in message and "Nothing was changed" in message, message
    return message


def test_a_get_of_an_endpoint_or_a_deployment_answers_its_etag(arm: Arm) -> None:
    for path in (f"/onlineEndpoints/{ENDPOINT}", DEPLOYMENT):
        tag, doc = arm.settled(path)
        assert tag.startswith('"') and len(tag) > 10
        assert doc["etag"] == tag
        assert arm.get(path)[0] == tag, "an unchanged resource keeps its ETag"
    listed = arm.call("GET", f"/onlineEndpoints/{ENDPOINT}/deployments").json()["value"]
    assert {d["name"]: d["etag"] for d in listed}["green"] == arm.get(DEPLOYMENT)[0]


def test_a_stale_if_match_on_an_endpoint_is_412_and_changes_nothing(arm: Arm) -> None:
    path = f"/onlineEndpoints/{ENDPOINT}"
    read_tag, doc = arm.settled(path)
    # someone else changes the endpoint after our read
    other = arm.call("PUT", path, _with(doc, tags={"changed-by": "someone-else"}))
    assert other.status_code in (200, 201), other.text
    now_tag, now = arm.get(path)
    assert now_tag != read_tag and other.headers["ETag"] == now_tag

    stale = arm.call("PUT", path, _with(doc, traffic={"blue": 0, "green": 100}), if_match=read_tag)
    _refused(stale, ENDPOINT)
    patch = arm.call("PATCH", path, {"properties": {"traffic": {"green": 100}}}, if_match=read_tag)
    _refused(patch, ENDPOINT)
    after_tag, after = arm.get(path)
    assert after_tag == now_tag
    assert after["properties"]["traffic"] == now["properties"]["traffic"] == {"blue": 100}
    assert after["tags"] == {"changed-by": "someone-else"}

    accepted = arm.call("PUT", path, _with(now, tags={"changed-by": "us"}), if_match=now_tag)
    assert accepted.status_code == 200, accepted.text
    assert accepted.headers["ETag"] != now_tag
    settled_tag, settled = arm.settled(path)
    assert settled["tags"] == {"changed-by": "us"}
    # the emulator finishing the operation (Updating -> Succeeded) keeps the ETag
    assert settled_tag == accepted.headers["ETag"]


def test_if_match_star_needs_the_endpoint_to_exist(arm: Arm) -> None:
    path = f"/onlineEndpoints/{ENDPOINT}"
    _, doc = arm.settled(path)
    same = arm.call("PUT", path, _with(doc), if_match="*")
    assert same.status_code == 200, same.text

    missing = arm.call("PUT", "/onlineEndpoints/etag-missing", _with(doc), if_match="*")
    _refused(missing, "etag-missing")
    assert arm.call("GET", "/onlineEndpoints/etag-missing").status_code == 404


def test_a_stale_if_match_on_a_deployment_is_412_and_changes_nothing(arm: Arm) -> None:
    read_tag, doc = arm.settled(DEPLOYMENT)
    other = arm.call("PUT", DEPLOYMENT, _with(doc, tags={"round": "someone-else"}))
    assert other.status_code == 200, other.text
    now_tag, now = arm.settled(DEPLOYMENT)
    assert now_tag != read_tag

    stale = arm.call(
        "PUT",
        DEPLOYMENT,
        _with(doc, sku={**doc["sku"], "capacity": 2}, tags={"round": "stale"}),
        if_match=read_tag,
    )
    _refused(stale, "green", ENDPOINT)
    after_tag, after = arm.get(DEPLOYMENT)
    assert after_tag == now_tag
    assert after["sku"]["capacity"] == now["sku"]["capacity"] == 1
    assert after["tags"] == {"round": "someone-else"}
    assert after["properties"]["provisioningState"] == "Succeeded"

    accepted = arm.call("PUT", DEPLOYMENT, _with(now, tags={"round": "us"}), if_match=now_tag)
    assert accepted.status_code == 200, accepted.text
    settled_tag, settled = arm.settled(DEPLOYMENT)
    assert settled["tags"] == {"round": "us"}
    assert settled_tag == accepted.headers["ETag"] != now_tag
