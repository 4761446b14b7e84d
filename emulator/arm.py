"""The control plane: Azure Resource Manager routes of Azure ML online endpoints.

Paths, bodies and long-running-operation headers follow what azure-ai-ml's
generated REST client sends and expects, so an unchanged `MLClient` drives the
emulator.

Endpoints and deployments carry an `ETag` (header, and `etag` in the body); a PUT or
PATCH with an `If-Match` that is not the current ETag is 412, so two clients that read
the same version cannot both write over it.

The workspace's other routes (assets, datastores, computes, operations) are in
arm_workspace.py, what every route shares in arm_base.py.

One route is the emulator's own: GET `{endpoint}/mirroredRequests?top=K` reads the last
mirrored requests with the live and the mirror answer (mirror_sample.py); Azure drops
the mirror's answers and has no such route.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import arm_workspace
from emulator.arm_base import DEP, EP, WS, arm, listing, lro_headers, read_json
from emulator.errors import ApiError, bad_argument
from emulator.mirror_sample import DEFAULT_CAPACITY
from emulator.service import Emulator

# ETags and If-Match


def etag_of(doc: dict[str, Any]) -> str:
    """The version of an endpoint or deployment as the client sees it, as a quoted ETag.

    A digest of the resource as GET renders it, without `provisioningState`: the emulator
    moves that on by itself (Updating -> Succeeded a moment after each PUT), and an ETag
    that changed with it would make a client's GET -> PUT fail with 412 although nobody
    else changed anything, whenever it lands inside another change's operation. Every
    change a client makes (traffic, mirror, instance count, tags, ...) changes the ETag,
    and so does the emulator putting back the old spec of a deployment whose update failed.
    """
    props = {k: v for k, v in (doc.get("properties") or {}).items() if k != "provisioningState"}
    seen = {k: v for k, v in doc.items() if k not in ("properties", "etag")}
    seen["properties"] = props
    text = json.dumps(seen, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def _with_etag(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "etag": etag_of(doc)}


def _resource(doc: dict[str, Any], **kwargs: Any) -> JSONResponse:
    """An endpoint or deployment answer: the body with its `etag`, and the `ETag` header."""
    tag = etag_of(doc)
    headers = {**kwargs.pop("headers", {}), "ETag": tag}
    return JSONResponse({**doc, "etag": tag}, headers=headers, **kwargs)


def _check_if_match(request: Request, current: dict[str, Any] | None, what: str) -> None:
    """Refuse (412) a write whose If-Match is not the current version of `what`.

    No If-Match: unconditional. `If-Match: *`: the resource must exist. Call it directly
    before the synchronous write, with no await in between, so nothing can change the
    resource after the check (the emulator serves requests on one asyncio loop).
    """
    wanted = request.headers.get("If-Match")
    if wanted is None:
        return
    tags = {t.strip() for t in wanted.split(",") if t.strip()}
    if current is None:
        raise ApiError(
            412,
            "PreconditionFailed",
            f"{what} does not exist, but the request requires it to (If-Match: {wanted}). "
            "Nothing was changed; read it again and retry.",
        )
    tag = etag_of(current)
    if "*" in tags or tag in tags or tag.strip('"') in tags:
        return
    raise ApiError(
        412,
        "PreconditionFailed",
        f"{what} has changed since it was read: If-Match {wanted} is not its current ETag "
        f"{tag}. Nothing was changed; read it again (GET) and retry the change on what it "
        "is now.",
    )


def _current(read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return read()
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


# endpoints


async def list_endpoints(request: Request, emulator: Emulator) -> Response:
    return listing([_with_etag(d) for d in emulator.endpoints.list_all()])


async def get_endpoint(request: Request, emulator: Emulator) -> Response:
    return _resource(emulator.endpoints.get(request.path_params["endpoint"]))


async def put_endpoint(request: Request, emulator: Emulator) -> Response:
    body = await read_json(request)
    name = request.path_params["endpoint"]
    # No await from the check to the write: nothing else runs in between.
    current = _current(lambda: emulator.endpoints.get(name))
    _check_if_match(request, current, f"Endpoint '{name}'")
    if request.method == "PATCH":
        doc, op_id, created = emulator.endpoints.patch(name, body)
    else:
        doc, op_id, created = emulator.endpoints.put(name, body)
    return _resource(
        doc, status_code=201 if created else 200, headers=lro_headers(request, emulator, op_id)
    )


async def delete_endpoint(request: Request, emulator: Emulator) -> Response:
    op_id = emulator.endpoints.delete(request.path_params["endpoint"])
    if op_id is None:
        return Response(status_code=204)
    return Response(status_code=202, headers=lro_headers(request, emulator, op_id))


async def list_keys(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.keys.list_keys(request.path_params["endpoint"]))


async def regenerate_keys(request: Request, emulator: Emulator) -> Response:
    endpoint = request.path_params["endpoint"]
    emulator.keys.regenerate(endpoint, await read_json(request))
    op_id = emulator.operations.new("regenerate-keys", endpoint)
    emulator.operations.finish(op_id)
    headers = lro_headers(request, emulator, op_id)
    del headers["Azure-AsyncOperation"]
    return Response(status_code=202, headers=headers)


async def get_token(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.keys.issue_token(request.path_params["endpoint"]))


# deployments


async def list_deployments(request: Request, emulator: Emulator) -> Response:
    docs = emulator.deployments.list_all(request.path_params["endpoint"])
    return listing([_with_etag(d) for d in docs])


async def get_deployment(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    return _resource(emulator.deployments.get(p["endpoint"], p["deployment"]))


async def put_deployment(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    body = await read_json(request)
    # No await from the check to the write: nothing else runs in between.
    current = _current(lambda: emulator.deployments.get(p["endpoint"], p["deployment"]))
    what = f"Deployment '{p['deployment']}' of endpoint '{p['endpoint']}'"
    _check_if_match(request, current, what)
    if request.method == "PATCH":
        doc, op_id, created = emulator.deployments.patch(p["endpoint"], p["deployment"], body)
    else:
        doc, op_id, created = emulator.deployments.put(p["endpoint"], p["deployment"], body)
    return _resource(
        doc, status_code=201 if created else 200, headers=lro_headers(request, emulator, op_id)
    )


async def delete_deployment(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    op_id = emulator.deployments.delete(p["endpoint"], p["deployment"])
    if op_id is None:
        return Response(status_code=204)
    return Response(status_code=202, headers=lro_headers(request, emulator, op_id))


async def get_logs(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    return JSONResponse(
        emulator.deployments.get_logs(p["endpoint"], p["deployment"], await read_json(request))
    )


async def list_skus(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    return JSONResponse(emulator.deployments.list_skus(p["endpoint"], p["deployment"]))


async def mirrored_requests(request: Request, emulator: Emulator) -> Response:
    """The endpoint's last mirrored requests with both answers, newest first (emulator only)."""
    name = request.path_params["endpoint"]
    emulator.endpoints.get(name)  # 404 for an unknown endpoint
    top = _top(request.query_params.get("top"))
    sample = emulator.mirror_sample
    return JSONResponse(
        {
            "value": [entry.as_json() for entry in sample.entries(name, top)],
            "capacity": sample.capacity,
            "skipped": sample.skipped(name),
        }
    )


def _top(text: str | None) -> int:
    """The `top` query parameter: a whole number, 0 or more (the sample holds no more than N)."""
    if text is None:
        return DEFAULT_CAPACITY
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else -1
    if value < 0:
        raise bad_argument(f"top must be a whole number of requests, 0 or more; got {text[:40]!r}")
    return value


routes = [
    *arm_workspace.routes,
    Route(WS + "/onlineEndpoints", arm(list_endpoints), methods=["GET"]),
    Route(EP, arm(get_endpoint), methods=["GET"]),
    Route(EP, arm(put_endpoint), methods=["PUT", "PATCH"]),
    Route(EP, arm(delete_endpoint), methods=["DELETE"]),
    Route(EP + "/listKeys", arm(list_keys), methods=["POST"]),
    Route(EP + "/regenerateKeys", arm(regenerate_keys), methods=["POST"]),
    Route(EP + "/token", arm(get_token), methods=["POST"]),
    Route(EP + "/deployments", arm(list_deployments), methods=["GET"]),
    Route(DEP, arm(get_deployment), methods=["GET"]),
    Route(DEP, arm(put_deployment), methods=["PUT", "PATCH"]),
    Route(DEP, arm(delete_deployment), methods=["DELETE"]),
    Route(DEP + "/getLogs", arm(get_logs), methods=["POST"]),
    Route(DEP + "/skus", arm(list_skus), methods=["GET"]),
    Route(EP + "/mirroredRequests", arm(mirrored_requests), methods=["GET"]),
]
