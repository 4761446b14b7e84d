"""The data plane: each endpoint's scoring URI, with Azure's auth, routing, limits and mirroring.

POST {base}/online/{endpoint}/score with `Authorization: Bearer <key or token>`.
Without the `azureml-model-deployment` header the request goes to a deployment
chosen by live traffic, and a share of such requests is copied to the mirror
deployment in the background (its response never reaches the client; the emulator
keeps the last ones with the live answer, in memory: mirror_sample.py). With the
header it goes to that deployment, whatever its traffic. The response names the
deployment that served it in `azureml-model-deployment`.

Limits, as Azure documents them: a body over the size limit is 413; more than
2 x max_concurrent_requests_per_instance x instance_count requests pending on a
deployment is 429; a request still unanswered after request_timeout_ms (waiting
for a free instance included) is 408; a model that fails or answers non-200 is 424.
An answer over the response size limit is 502 and is never read into memory.
Every request is recorded in the request log, off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator import bodies
from emulator.endpoints import EndpointRoute
from emulator.forwarding import (
    DEPLOYMENT_HEADER,
    Outgoing,
    error_response,
    forward,
    model_status,
)
from emulator.mirror_sample import Pending
from emulator.requestlog_schema import DROPPED
from emulator.service import Emulator

log = logging.getLogger(__name__)

NO_POSITIVE_WEIGHT = "The endpoint doesn't have any valid deployment with positive weight."


# What the instance's server answers on its scoring route (azmlinfsrv: GET, POST, OPTIONS).
_FORWARDED_METHODS = frozenset({"GET", "POST", "OPTIONS"})


def data_plane(app: ASGIApp, emulator: Emulator) -> ASGIApp:
    """Scoring requests go straight to `score`; everything else to `app` (the ARM routes).

    The scoring path is the hot one: skipping the router and middleware stack of the
    control plane's Starlette app saves CPU on every request.
    """

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _FORWARDED_METHODS:
            parts = scope["path"].split("/")
            if len(parts) == 4 and parts[1] == "online" and parts[2]:
                if parts[3] == "score":
                    response = await score(emulator, Request(scope, receive), parts[2])
                    await response(scope, receive, send)
                    return
                if parts[3] == "swagger.json" and scope["method"] == "GET":
                    response = await swagger(emulator, Request(scope, receive), parts[2])
                    await response(scope, receive, send)
                    return
        await app(scope, receive, send)

    return dispatch


async def score(emulator: Emulator, request: Request, endpoint: str) -> Response:
    """One scoring request, recorded in the request log."""
    started = time.perf_counter()
    route = emulator.endpoints.routes.get(endpoint.lower())
    if route is None:
        return error_response(404, f"Endpoint '{endpoint}' not found.")
    requested = request.headers.get(DEPLOYMENT_HEADER, "").strip()
    response, body = await _serve(emulator, request, route, requested)
    if request.method != "POST":
        return response  # a GET or OPTIONS of the scoring URI is not a scoring request
    emulator.requests.record(
        route.name,
        response.headers.get(DEPLOYMENT_HEADER, ""),
        mirrored=False,
        status=response.status_code,
        model_status=model_status(response),
        started=started,
        bytes_in=len(body),
        bytes_out=len(response.body),
    )
    return response


async def _serve(
    emulator: Emulator, request: Request, route: EndpointRoute, requested: str
) -> tuple[Response, bytes]:
    endpoint = route.name
    refused = _unauthorized(emulator, request, route)
    if refused is not None:
        return refused, b""
    try:
        body = await bodies.read_limited(request, emulator.max_body_bytes)
    except bodies.TooLarge:
        limit_mb = emulator.max_body_bytes / 2**20
        return error_response(
            413, f"The request body is larger than the limit of {limit_mb:g} MiB."
        ), b""
    except ClientDisconnect:
        return error_response(499, "The client closed the connection."), b""
    mirror_to: str | None = None
    if requested:
        name = requested
    else:
        chosen = route.live.next()
        if chosen is None:
            return error_response(404, NO_POSITIVE_WEIGHT), body
        name = chosen
        if request.method == "POST":
            mirror_to = route.mirror_gate.next()
    runtime = emulator.runtimes.get(endpoint, name)
    if runtime is None:
        return error_response(404, f"Deployment '{name}' not found in endpoint '{endpoint}'."), body
    outgoing = Outgoing.of(request, body)
    limit = emulator.max_response_bytes
    if mirror_to is not None:
        pending = _mirror(emulator, endpoint, mirror_to, outgoing)
        if pending is not None:
            started = time.perf_counter()
            response = await forward(runtime, outgoing, max_response_bytes=limit)
            latency_ms = (time.perf_counter() - started) * 1000
            pending.live(runtime.name, response.status_code, latency_ms, response.body)
            return response, body
    return await forward(runtime, outgoing, max_response_bytes=limit), body


async def swagger(emulator: Emulator, request: Request, endpoint: str) -> Response:
    """GET {base}/online/{endpoint}/swagger.json: a deployment's Swagger, from its server.

    The deployment is the one the header names, or one chosen by live traffic, as for
    scoring; the key or token is required as for scoring.
    """
    route = emulator.endpoints.routes.get(endpoint.lower())
    if route is None:
        return error_response(404, f"Endpoint '{endpoint}' not found.")
    refused = _unauthorized(emulator, request, route)
    if refused is not None:
        return refused
    name = request.headers.get(DEPLOYMENT_HEADER, "").strip() or route.live.next()
    runtime = emulator.runtimes.get(endpoint, name) if name else None
    if runtime is None:
        return error_response(404, f"Deployment '{name}' not found in endpoint '{endpoint}'.")
    outgoing = Outgoing.of(request, b"", path="/swagger.json")
    return await forward(runtime, outgoing, max_response_bytes=emulator.max_response_bytes)


def _unauthorized(emulator: Emulator, request: Request, route: EndpointRoute) -> Response | None:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return error_response(
            401, f"Endpoint '{route.name}' requires an Authorization: Bearer header."
        )
    if not emulator.keys.authorize(route, credential.strip()):
        return error_response(401, f"The key or token is not valid for endpoint '{route.name}'.")
    return None


def _mirror(
    emulator: Emulator, endpoint: str, deployment: str, outgoing: Outgoing
) -> Pending | None:
    """Copy a request to the mirror deployment in the background; drop it when saturated.

    Returns the mirror sample's entry for the copy sent, for the caller to complete with
    the live answer; None when nothing is sent or the sample keeps none.
    """
    runtime = emulator.runtimes.get(endpoint, deployment)
    if runtime is None:
        return None
    started = time.perf_counter()
    body = outgoing.body

    def record(status: int, model_status: int | None, size: int) -> None:
        emulator.requests.record(
            endpoint,
            runtime.name,
            mirrored=True,
            status=status,
            model_status=model_status,
            started=started,
            bytes_in=len(body),
            bytes_out=size,
        )

    if not runtime.pool.admit():
        record(DROPPED, None, 0)
        return None
    pending = emulator.mirror_sample.begin(endpoint, body)

    async def send() -> None:
        status, model_answered = 500, None
        answer: bytes | memoryview = b""
        try:
            # The mirror's answer is dropped, but it is held whole first: the same limit.
            response = await forward(
                runtime, outgoing, max_response_bytes=emulator.max_response_bytes, admitted=True
            )
            status, model_answered, answer = (
                response.status_code,
                model_status(response),
                response.body,
            )
        except Exception:
            log.exception("mirror request to %s failed", runtime.name)
        record(status, model_answered, len(answer))
        if pending is not None:
            pending.mirror(runtime.name, status, (time.perf_counter() - started) * 1000, answer)

    task = asyncio.create_task(send())
    emulator.background.add(task)
    task.add_done_callback(emulator.background.discard)
    return pending


async def _wrong_method(request: Request) -> Response:
    return error_response(405, "The scoring URI takes GET, POST and OPTIONS requests only.")


# GET, POST and OPTIONS are served by `data_plane` before routing; others get 405 here.
routes = [Route("/online/{endpoint}/score", _wrong_method, methods=["PUT", "PATCH", "DELETE"])]
