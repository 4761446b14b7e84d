"""The data plane: each endpoint's scoring URI, with Azure's auth, routing and mirroring.

POST {base}/online/{endpoint}/score with `Authorization: Bearer <key or token>`.
Without the `azureml-model-deployment` header the request goes to a deployment
chosen by live traffic, and a share of such requests is copied to the mirror
deployment in the background (its response is dropped; it never affects the
client). With the header it goes to that deployment, whatever its traffic. The
response names the deployment that served it in `azureml-model-deployment`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.instances import Instance
from emulator.service import DeploymentRuntime, Emulator

log = logging.getLogger(__name__)

DEPLOYMENT_HEADER = "azureml-model-deployment"
NO_POSITIVE_WEIGHT = "The endpoint doesn't have any valid deployment with positive weight."
_CRASH_GRACE_S = 0.5


def _error(status: int, message: str, **headers: str) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers=headers or None)


async def score(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    endpoint = request.path_params["endpoint"]
    route = emulator.routes.get(endpoint.lower())
    if route is None:
        return _error(404, f"Endpoint '{endpoint}' not found.")
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return _error(401, f"Endpoint '{route.name}' requires an Authorization: Bearer header.")
    if not emulator.authorize(route, credential.strip()):
        return _error(401, f"The key or token is not valid for endpoint '{route.name}'.")
    body = await request.body()
    requested = request.headers.get(DEPLOYMENT_HEADER, "").strip()
    mirror_to: str | None = None
    if requested:
        name = requested
    else:
        chosen = route.live.next()
        if chosen is None:
            return _error(404, NO_POSITIVE_WEIGHT)
        name = chosen
        mirror_to = route.mirror_gate.next()
    runtime = emulator.deployments.get((route.name.lower(), name.lower()))
    if runtime is None:
        return _error(
            404,
            f"Deployment '{name}' not found in endpoint '{route.name}'.",
            **{DEPLOYMENT_HEADER: name},
        )
    if mirror_to is not None:
        _mirror(emulator, route.name, mirror_to, body)
    return await forward(runtime, body)


async def forward(runtime: DeploymentRuntime, body: bytes) -> Response:
    """Send one scoring request to a ready instance of the deployment and translate the answer."""
    headers = {DEPLOYMENT_HEADER: runtime.name, "x-request-id": str(uuid.uuid4())}
    tried: list[Instance] = []
    for _attempt in range(3):
        instance = runtime.pool.pick(exclude=tried)
        if instance is None and tried:
            break
        if instance is None:
            return _error(
                503,
                f"Deployment '{runtime.name}' has no ready instance; it is starting, restarting "
                "or failed (see its logs).",
                **headers,
            )
        tried.append(instance)
        instance.in_flight += 1
        try:
            answer = await instance.client.post(
                "/score", content=body, timeout=runtime.request_timeout_ms / 1000
            )
        except httpx.ConnectError:
            # The instance never saw the request (it died, or its socket is not there
            # yet): another instance can take it.
            continue
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            # The connection broke before any answer. When the process is gone, run()
            # never returned, so the request goes to another instance, as Azure's front
            # end retries a reset from a crashed replica; otherwise it is the answer.
            if await _still_running(instance):
                return _error(
                    502,
                    f"Instance {instance.id} of deployment '{runtime.name}' closed the "
                    f"connection without answering: {type(exc).__name__}",
                    **headers,
                )
            continue
        except httpx.TimeoutException:
            return _error(
                408,
                f"Request to deployment '{runtime.name}' timed out after "
                f"{runtime.request_timeout_ms} ms (request_timeout_ms).",
                **headers,
            )
        except httpx.TransportError as exc:
            return _error(
                502,
                f"Instance {instance.id} of deployment '{runtime.name}' failed while serving "
                f"the request: {type(exc).__name__}",
                **headers,
            )
        finally:
            instance.in_flight -= 1
        if answer.status_code == 200:
            return Response(
                answer.content,
                status_code=200,
                media_type=answer.headers.get("content-type", "application/json"),
                headers=headers,
            )
        reason = _model_error_reason(answer)
        headers["ms-azureml-model-error-statuscode"] = str(answer.status_code)
        headers["ms-azureml-model-error-reason"] = reason
        return Response(
            answer.content,
            status_code=424,
            media_type=answer.headers.get("content-type", "application/json"),
            headers=headers,
        )
    return _error(503, f"Deployment '{runtime.name}' has no reachable instance.", **headers)


async def _still_running(instance: Instance) -> bool:
    """Whether the instance's process outlives a broken connection (a crash ends it quickly)."""
    process = instance.process
    if process is None:
        return False
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), _CRASH_GRACE_S)
    except TimeoutError:
        return True
    return False


def _model_error_reason(answer: httpx.Response) -> str:
    try:
        parsed = json.loads(answer.content)
        reason = parsed.get("error") if isinstance(parsed, dict) else None
    except ValueError:
        reason = None
    text = str(reason or answer.reason_phrase or "model error")
    # A header value: one line, printable, bounded.
    return "".join(c if 32 <= ord(c) < 127 else " " for c in text)[:200]


def _mirror(emulator: Emulator, endpoint: str, deployment: str, body: bytes) -> None:
    runtime = emulator.deployments.get((endpoint.lower(), deployment.lower()))
    if runtime is None:
        return
    capacity = 2 * runtime.max_concurrency * max(1, len(runtime.pool.ready_instances()))
    if emulator.mirror_in_flight.get(runtime.name, 0) >= capacity:
        emulator.mirror_dropped[runtime.name] = emulator.mirror_dropped.get(runtime.name, 0) + 1
        return

    async def send() -> None:
        emulator.mirror_in_flight[runtime.name] = emulator.mirror_in_flight.get(runtime.name, 0) + 1
        try:
            await forward(runtime, body)
        except Exception:
            log.exception("mirror request to %s failed", runtime.name)
        finally:
            emulator.mirror_in_flight[runtime.name] -= 1

    task = asyncio.create_task(send())
    emulator.background.add(task)
    task.add_done_callback(emulator.background.discard)


routes = [Route("/online/{endpoint}/score", score, methods=["POST"])]
