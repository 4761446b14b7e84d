"""One request's way to an instance of a deployment, and the answer translated for the client.

`forward` admits the request against the deployment's pending limit (429), waits for a
free instance within request_timeout_ms (408), retries on another instance when the
first never saw the request or died with it, relays the answer (an answer over the
response limit is 502 and never read into memory), and turns a model's non-200 into
424 with Azure's model-error headers. The scoring URI, the Swagger route and the mirror
all send through it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator.instance import Instance
from emulator.instances import DeploymentPool
from emulator.runtimes import DeploymentRuntime
from emulator.upstream import Answer, Broken, NotReached, TooLarge

DEPLOYMENT_HEADER = "azureml-model-deployment"
TOO_MANY = "Too many pending requests"
_CRASH_GRACE_S = 0.5
# A bound for an upstream call that outlives its client's timeout (Azure's maximum
# request timeout, plus a margin); liveness probes end a hung instance long before.
_UPSTREAM_TIMEOUT_S = 200.0
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


def error_response(status: int, message: str, **headers: str) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers=headers or None)


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
        return error_response(
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
            return error_response(
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
            return error_response(
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
                return error_response(
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
    return error_response(503, f"Deployment '{runtime.name}' has no reachable instance.", **headers)


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
    return error_response(
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


def model_status(response: Response) -> int | None:
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
