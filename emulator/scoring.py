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
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator import bodies
from emulator.endpoints import EndpointRoute
from emulator.instance import Instance
from emulator.instances import DeploymentPool
from emulator.mirror_sample import Pending
from emulator.requestlog_schema import DROPPED
from emulator.runtimes import DeploymentRuntime
from emulator.service import Emulator
from emulator.upstream import Answer, Broken, NotReached, TooLarge

log = logging.getLogger(__name__)

DEPLOYMENT_HEADER = "azureml-model-deployment"
NO_POSITIVE_WEIGHT = "The endpoint doesn't have any valid deployment with positive weight."
TOO_MANY = "Too many pending requests"
_CRASH_GRACE_S = 0.5
# A bound for an upstream call that outlives its client's timeout (Azure's maximum
# request timeout, plus a margin); liveness probes end a hung instance long before.
_UPSTREAM_TIMEOUT_S = 200.0


# What the instance's server answers on its scoring route (azmlinfsrv: GET, POST, OPTIONS).
_FORWARDED_METHODS = frozenset({"GET", "POST", "OPTIONS"})
# Request headers the instance never sees: the connection's own, and the credential
# (checked here; a score.py that logs its request_headers must not log a key).
_NOT_FORWARDED = frozenset(
    {b"host", b"authorization", b"content-length", b"connection", b"keep-alive"}
    | {b"transfer-encoding", b"te", b"upgrade", b"expect", b"x-request-id"}
)


@dataclass(frozen=True)
class Outgoing:
    """A request as it is sent on to an instance."""

    body: bytes
    method: str = "POST"
    target: str = "/score"
    headers: bytes = b""
    request_id: str = ""

    @classmethod
    def of(cls, request: Request, body: bytes, *, path: str = "/score") -> Outgoing:
        """The client's request for an instance: its headers, with one request id."""
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        lines = [
            name + b": " + value + b"\r\n"
            for name, value in request.scope["headers"]
            if name not in _NOT_FORWARDED
        ]
        lines.append(b"x-request-id: " + request_id.encode("latin-1") + b"\r\n")
        query = request.scope.get("query_string", b"").decode("latin-1")
        return cls(
            body,
            request.method,
            f"{path}?{query}" if query else path,
            b"".join(lines),
            request_id,
        )


def _error(status: int, message: str, **headers: str) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers=headers or None)


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
        return _error(404, f"Endpoint '{endpoint}' not found.")
    requested = request.headers.get(DEPLOYMENT_HEADER, "").strip()
    response, body = await _serve(emulator, request, route, requested)
    if request.method != "POST":
        return response  # a GET or OPTIONS of the scoring URI is not a scoring request
    emulator.requests.record(
        route.name,
        response.headers.get(DEPLOYMENT_HEADER, ""),
        mirrored=False,
        status=response.status_code,
        model_status=_model_status(response),
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
        return _error(413, f"The request body is larger than the limit of {limit_mb:g} MiB."), b""
    except ClientDisconnect:
        return _error(499, "The client closed the connection."), b""
    mirror_to: str | None = None
    if requested:
        name = requested
    else:
        chosen = route.live.next()
        if chosen is None:
            return _error(404, NO_POSITIVE_WEIGHT), body
        name = chosen
        if request.method == "POST":
            mirror_to = route.mirror_gate.next()
    runtime = emulator.runtimes.get(endpoint, name)
    if runtime is None:
        return _error(404, f"Deployment '{name}' not found in endpoint '{endpoint}'."), body
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
        return _error(404, f"Endpoint '{endpoint}' not found.")
    refused = _unauthorized(emulator, request, route)
    if refused is not None:
        return refused
    name = request.headers.get(DEPLOYMENT_HEADER, "").strip() or route.live.next()
    runtime = emulator.runtimes.get(endpoint, name) if name else None
    if runtime is None:
        return _error(404, f"Deployment '{name}' not found in endpoint '{endpoint}'.")
    outgoing = Outgoing.of(request, b"", path="/swagger.json")
    return await forward(runtime, outgoing, max_response_bytes=emulator.max_response_bytes)


def _unauthorized(emulator: Emulator, request: Request, route: EndpointRoute) -> Response | None:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return _error(401, f"Endpoint '{route.name}' requires an Authorization: Bearer header.")
    if not emulator.keys.authorize(route, credential.strip()):
        return _error(401, f"The key or token is not valid for endpoint '{route.name}'.")
    return None


async def forward(
    runtime: DeploymentRuntime,
    outgoing: Outgoing,
    *,
    max_response_bytes: int | None = None,
    admitted: bool = False,
) -> Response:
    """Send one request to an instance of the deployment and translate the answer."""
    request_id = outgoing.request_id or str(uuid.uuid4())
    headers = {DEPLOYMENT_HEADER: runtime.name, "x-request-id": request_id}
    pool = runtime.pool
    if not admitted and not pool.admit():
        return _error(
            429,
            f"{TOO_MANY}: deployment '{runtime.name}' already has {pool.capacity} requests "
            f"pending (2 x max_concurrent_requests_per_instance x instance_count).",
            **headers,
        )
    try:
        return await _forward_admitted(runtime, outgoing, headers, max_response_bytes)
    finally:
        pool.leave()


async def _forward_admitted(
    runtime: DeploymentRuntime, outgoing: Outgoing, headers: dict[str, str], limit: int | None
) -> Response:
    pool = runtime.pool
    loop = asyncio.get_running_loop()
    deadline = loop.time() + runtime.request_timeout_ms / 1000
    tried: list[Instance] = []
    for _attempt in range(3):
        try:
            instance = await pool.acquire(deadline, exclude=tried)
        except TimeoutError:
            return _timeout(runtime, headers)
        if instance is None:
            if tried:
                break
            return _error(
                503,
                f"Deployment '{runtime.name}' has no instance that can serve; it failed or "
                "is being replaced (see its logs).",
                **headers,
            )
        tried.append(instance)
        call = asyncio.ensure_future(_call(instance, outgoing, limit))
        await asyncio.wait((call,), timeout=max(0.001, deadline - loop.time()))
        if not call.done():
            # The instance goes on with run() after the client got its 408, as a real
            # one does: its slot stays taken until it answers (or its liveness probe
            # replaces it), so the next requests see it busy.
            call.add_done_callback(functools.partial(_finish_late, pool, instance))
            return _timeout(runtime, headers)
        try:
            answer = call.result()
        except TooLarge as exc:
            pool.release(instance)
            # The model answered, but more than the front end relays. Azure documents no
            # response limit; its front end is a gateway in front of the model's container,
            # and a gateway that cannot relay its upstream's answer says 502 (Bad Gateway).
            # Not 424: that is "the model answered non-200", with the model's status in
            # headers, and this model answered 200.
            return _error(
                502,
                f"The answer of deployment '{runtime.name}' (instance {instance.id}) has "
                f"{exc.size / 2**20:.1f} MiB, over the response limit of "
                f"{exc.limit / 2**20:g} MiB (--max-response-mb); it was dropped.",
                **headers,
            )
        except NotReached:
            pool.release(instance)
            # The instance never saw the request (it died, or is not listening yet):
            # another instance can take it.
            continue
        except Broken as exc:
            # The connection broke before any answer. When the process is gone, run()
            # never returned, so the request goes to another instance, as Azure's front
            # end retries a reset from a crashed replica; otherwise it is the answer.
            pool.release(instance)
            if await _still_running(instance):
                return _error(
                    502,
                    f"Instance {instance.id} of deployment '{runtime.name}' closed the "
                    f"connection without answering: {exc}",
                    **headers,
                )
            continue
        except TimeoutError:
            pool.release(instance)
            return _timeout(runtime, headers)
        pool.release(instance)
        headers = {**dict(answer.headers), **headers}
        if answer.status == 200 or outgoing.target.startswith("/swagger.json"):
            return Response(
                answer.body,
                status_code=answer.status,
                media_type=answer.content_type,
                headers=headers,
            )
        headers["ms-azureml-model-error-statuscode"] = str(answer.status)
        headers["ms-azureml-model-error-reason"] = _model_error_reason(answer)
        return Response(
            answer.body, status_code=424, media_type=answer.content_type, headers=headers
        )
    return _error(503, f"Deployment '{runtime.name}' has no reachable instance.", **headers)


async def _call(instance: Instance, outgoing: Outgoing, limit: int | None) -> Answer:
    async with asyncio.timeout(_UPSTREAM_TIMEOUT_S):
        return await instance.upstream.request(
            outgoing.method, outgoing.target, outgoing.body, headers=outgoing.headers, limit=limit
        )


def _finish_late(pool: DeploymentPool, instance: Instance, call: asyncio.Future[Any]) -> None:
    pool.release(instance)
    if not call.cancelled():
        call.exception()  # retrieved, so asyncio does not log it as never retrieved


def _timeout(runtime: DeploymentRuntime, headers: dict[str, str]) -> Response:
    return _error(
        408,
        f"Request to deployment '{runtime.name}' timed out after {runtime.request_timeout_ms} ms "
        "(request_timeout_ms).",
        **headers,
    )


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


def _model_status(response: Response) -> int | None:
    if response.status_code == 200:
        return 200
    value = response.headers.get("ms-azureml-model-error-statuscode")
    return int(value) if value and value.isdigit() else None


def _model_error_reason(answer: Answer) -> str:
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        parsed = None
    # azmlinfsrv's errors say {"message": ...}; a score.py's own often {"error": ...}.
    reason = None
    if isinstance(parsed, dict):
        reason = parsed.get("message") or parsed.get("error")
    if not reason:
        try:
            reason = HTTPStatus(answer.status).phrase
        except ValueError:
            reason = "model error"
    text = str(reason)
    # A header value: one line, printable, bounded.
    return "".join(c if 32 <= ord(c) < 127 else " " for c in text)[:200]


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
        status, model_status = 500, None
        answer: bytes | memoryview = b""
        try:
            # The mirror's answer is dropped, but it is held whole first: the same limit.
            response = await forward(
                runtime, outgoing, max_response_bytes=emulator.max_response_bytes, admitted=True
            )
            status, model_status, answer = (
                response.status_code,
                _model_status(response),
                response.body,
            )
        except Exception:
            log.exception("mirror request to %s failed", runtime.name)
        record(status, model_status, len(answer))
        if pending is not None:
            pending.mirror(runtime.name, status, (time.perf_counter() - started) * 1000, answer)

    task = asyncio.create_task(send())
    emulator.background.add(task)
    task.add_done_callback(emulator.background.discard)
    return pending


async def _wrong_method(request: Request) -> Response:
    return _error(405, "The scoring URI takes GET, POST and OPTIONS requests only.")


# GET, POST and OPTIONS are served by `data_plane` before routing; others get 405 here.
routes = [Route("/online/{endpoint}/score", _wrong_method, methods=["PUT", "PATCH", "DELETE"])]
