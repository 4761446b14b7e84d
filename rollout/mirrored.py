"""The last mirrored requests with the live and the mirror answer: the emulator's sample.

Azure drops the mirror deployment's answers, so only the local emulator can show what
both deployments answered to the same live request (its `mirroredRequests` route, an
emulator-only extension). On Azure `read_mirrored` refuses and says what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from rollout.errors import NotFound, RolloutError, ServiceError
from rollout.workspace import Workspace

# Any api-version is accepted by the emulator; this is the one the SDK sends for deployments.
_API_VERSION = "2023-04-01-preview"
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class MirroredAnswer:
    deployment: str
    status: int
    latency_ms: float
    body: str


@dataclass(frozen=True)
class MirroredRequest:
    time: datetime  # aware, UTC
    body: str  # the request body
    live: MirroredAnswer
    mirror: MirroredAnswer


def read_mirrored(ws: Workspace, endpoint: str, *, top: int = 200) -> list[MirroredRequest]:
    """The newest `top` mirrored requests of `endpoint` with both answers, newest first."""
    facts = ws.facts
    if ws.kind == "azure" or facts is None:
        raise RolloutError(
            f"the mirrored requests of '{endpoint}' with both answers exist only on the local "
            "emulator: Azure drops the mirror deployment's answers. To compare the two "
            "deployments on Azure, send the same inputs to both (with the "
            "azureml-model-deployment header)."
        )
    url = facts.arm_url.rstrip("/") + ws.resource_path(endpoint) + "/mirroredRequests"
    try:
        with httpx.Client(verify=facts.ca_cert, timeout=_TIMEOUT_S) as client:
            response = client.get(
                url,
                params={"api-version": _API_VERSION, "top": str(top)},
                headers={"Authorization": f"Bearer {facts.token}"},
            )
    except httpx.HTTPError as exc:
        raise ServiceError(
            f"reading the mirrored requests of '{endpoint}' from the emulator failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if response.status_code != 200:
        message = _message(response)
        if response.status_code == 404:
            raise NotFound(f"mirrored requests of '{endpoint}': {message}")
        raise ServiceError(
            f"the emulator refused to read the mirrored requests of '{endpoint}' "
            f"({response.status_code}): {message}"
        )
    try:
        return [_request(item) for item in response.json()["value"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ServiceError(
            f"the emulator's answer for the mirrored requests of '{endpoint}' is not "
            f"what was expected: {exc!r}"
        ) from exc


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or response.text)
    except (ValueError, AttributeError):
        return response.text[:500]


def _answer(data: dict[str, Any]) -> MirroredAnswer:
    return MirroredAnswer(
        deployment=str(data["deployment"]),
        status=int(data["statusCode"]),
        latency_ms=float(data["latencyMs"]),
        body=str(data["response"]),
    )


def _request(data: dict[str, Any]) -> MirroredRequest:
    time = datetime.fromisoformat(str(data["time"]))
    return MirroredRequest(
        time=time.astimezone(UTC) if time.tzinfo else time.replace(tzinfo=UTC),
        body=str(data["request"]),
        live=_answer(data["live"]),
        mirror=_answer(data["mirror"]),
    )
