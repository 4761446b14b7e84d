"""The control plane: Azure Resource Manager routes of Azure ML online endpoints.

Paths, bodies and long-running-operation headers follow what azure-ai-ml's
generated REST client sends and expects, so an unchanged `MLClient` drives the
emulator. Every ARM call needs `Authorization: Bearer <token>` with the token of
the state directory; anything else is 401. Any `api-version` is accepted.

Endpoints and deployments carry an `ETag` (header, and `etag` in the body); a PUT or
PATCH with an `If-Match` that is not the current ETag is 412, so two clients that read
the same version cannot both write over it.

One route is the emulator's own: GET `{endpoint}/mirroredRequests?top=K` reads the last
mirrored requests with the live and the mirror answer (mirror_sample.py); Azure drops
the mirror's answers and has no such route.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import bodies
from emulator.assets import VersionQuery
from emulator.auth import UNAUTHORIZED, has_arm_token
from emulator.errors import ApiError, bad_argument
from emulator.mirror_sample import DEFAULT_CAPACITY
from emulator.service import Emulator
from emulator.workspace import LOCATION, PROVIDER

log = logging.getLogger(__name__)

Handler = Callable[[Request, Emulator], Awaitable[Response]]

WS = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices"
    "/workspaces/{ws}"
)
EP = WS + "/onlineEndpoints/{endpoint}"
DEP = EP + "/deployments/{deployment}"
_POLL_MS = "250"
# Items per page of a listing (azure-ai-ml follows nextLink for the rest).
_PAGE = 100


def arm(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, check the workspace scope and turn ApiError into Azure's error shape."""

    async def endpoint(request: Request) -> Response:
        emulator: Emulator = request.app.state.emulator
        try:
            if not has_arm_token(request):
                raise ApiError(401, "AuthenticationFailed", UNAUTHORIZED)
            params = request.path_params
            if "rg" in params:
                emulator.workspace.check_scope(params["sub"], params["rg"], params["ws"])
            return await handler(request, emulator)
        except ApiError as exc:
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.url.path, exc.message)
            return JSONResponse(exc.body(), status_code=exc.status)

    return endpoint


async def _json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, read no further than the control plane's size limit."""
    try:
        raw = await bodies.read_limited(request, bodies.MAX_BODY_BYTES)
    except bodies.TooLarge as exc:
        raise bodies.too_large(exc.size) from exc
    return bodies.parse_json(raw)


def _lro_headers(request: Request, emulator: Emulator, op_id: str) -> dict[str, str]:
    api = request.query_params.get("api-version", "2023-04-01")
    ops = (
        f"{emulator.base_url}/subscriptions/{emulator.workspace.subscription_id}"
        f"/providers/{PROVIDER}/locations/{LOCATION}"
    )
    return {
        "Azure-AsyncOperation": f"{ops}/mfeOperationsStatus/{op_id}?api-version={api}",
        "Location": f"{ops}/mfeOperationResults/{op_id}?api-version={api}",
        "x-ms-async-operation-timeout": "PT1H",
        "x-ms-retry-after-ms": _POLL_MS,
    }


def _listing(items: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"value": items})


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


# workspace


async def get_workspace(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.workspace.doc())


# operations


async def operation_status(request: Request, emulator: Emulator) -> Response:
    doc = emulator.operations.get(request.path_params["op"])
    body = {
        k: v
        for k, v in doc.items()
        if k in ("id", "name", "status", "startTime", "endTime", "error")
    }
    return JSONResponse(body, headers={"x-ms-retry-after-ms": _POLL_MS})


async def operation_result(request: Request, emulator: Emulator) -> Response:
    doc = emulator.operations.get(request.path_params["op"])
    if doc["status"] == "InProgress":
        return Response(status_code=202, headers=_lro_headers(request, emulator, doc["id"]))
    if doc["status"] == "Failed":
        error = doc.get("error") or {"code": "Failed", "message": "The operation failed."}
        return JSONResponse({"error": error}, status_code=400)
    return Response(status_code=200)


# endpoints


async def list_endpoints(request: Request, emulator: Emulator) -> Response:
    return _listing([_with_etag(d) for d in emulator.endpoints.list_all()])


async def get_endpoint(request: Request, emulator: Emulator) -> Response:
    return _resource(emulator.endpoints.get(request.path_params["endpoint"]))


async def put_endpoint(request: Request, emulator: Emulator) -> Response:
    body = await _json(request)
    name = request.path_params["endpoint"]
    # No await from the check to the write: nothing else runs in between.
    current = _current(lambda: emulator.endpoints.get(name))
    _check_if_match(request, current, f"Endpoint '{name}'")
    if request.method == "PATCH":
        doc, op_id, created = emulator.endpoints.patch(name, body)
    else:
        doc, op_id, created = emulator.endpoints.put(name, body)
    return _resource(
        doc, status_code=201 if created else 200, headers=_lro_headers(request, emulator, op_id)
    )


async def delete_endpoint(request: Request, emulator: Emulator) -> Response:
    op_id = emulator.endpoints.delete(request.path_params["endpoint"])
    if op_id is None:
        return Response(status_code=204)
    return Response(status_code=202, headers=_lro_headers(request, emulator, op_id))


async def list_keys(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.keys.list_keys(request.path_params["endpoint"]))


async def regenerate_keys(request: Request, emulator: Emulator) -> Response:
    endpoint = request.path_params["endpoint"]
    emulator.keys.regenerate(endpoint, await _json(request))
    op_id = emulator.operations.new("regenerate-keys", endpoint)
    emulator.operations.finish(op_id)
    headers = _lro_headers(request, emulator, op_id)
    del headers["Azure-AsyncOperation"]
    return Response(status_code=202, headers=headers)


async def get_token(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.keys.issue_token(request.path_params["endpoint"]))


# deployments


async def list_deployments(request: Request, emulator: Emulator) -> Response:
    docs = emulator.deployments.list_all(request.path_params["endpoint"])
    return _listing([_with_etag(d) for d in docs])


async def get_deployment(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    return _resource(emulator.deployments.get(p["endpoint"], p["deployment"]))


async def put_deployment(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    body = await _json(request)
    # No await from the check to the write: nothing else runs in between.
    current = _current(lambda: emulator.deployments.get(p["endpoint"], p["deployment"]))
    what = f"Deployment '{p['deployment']}' of endpoint '{p['endpoint']}'"
    _check_if_match(request, current, what)
    if request.method == "PATCH":
        doc, op_id, created = emulator.deployments.patch(p["endpoint"], p["deployment"], body)
    else:
        doc, op_id, created = emulator.deployments.put(p["endpoint"], p["deployment"], body)
    return _resource(
        doc, status_code=201 if created else 200, headers=_lro_headers(request, emulator, op_id)
    )


async def delete_deployment(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    op_id = emulator.deployments.delete(p["endpoint"], p["deployment"])
    if op_id is None:
        return Response(status_code=204)
    return Response(status_code=202, headers=_lro_headers(request, emulator, op_id))


async def get_logs(request: Request, emulator: Emulator) -> Response:
    p = request.path_params
    return JSONResponse(
        emulator.deployments.get_logs(p["endpoint"], p["deployment"], await _json(request))
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


# assets


def _page(request: Request, emulator: Emulator, items: list[dict[str, Any]]) -> JSONResponse:
    """One page of a listing in ARM's shape: `value`, and `nextLink` while more remain.

    `$skip` is the continuation token of `nextLink` (here, the offset); azure-ai-ml's pagers
    follow `nextLink` until it is absent. `count`, where the SDK sends it, is the page size.
    """
    skip = _whole(request.query_params.get("$skip"), "$skip", minimum=0) or 0
    size = min(_whole(request.query_params.get("count"), "count", minimum=1) or _PAGE, _PAGE)
    body: dict[str, Any] = {"value": items[skip : skip + size]}
    if skip + size < len(items):
        query = {**request.query_params, "$skip": str(skip + size)}
        body["nextLink"] = f"{emulator.base_url}{request.url.path}?{urlencode(query)}"
    return JSONResponse(body)


def _whole(text: str | None, what: str, *, minimum: int) -> int | None:
    if text is None:
        return None
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else -1
    if value < minimum:
        raise bad_argument(f"{what} must be a whole number, {minimum} or more; got {text[:40]!r}")
    return value


def _asset_routes(kind: str) -> list[Route]:
    async def containers(request: Request, emulator: Emulator) -> Response:
        view = request.query_params.get("listViewType", "ActiveOnly").lower()
        return _page(request, emulator, emulator.assets.list_containers(kind, view=view))

    async def container(request: Request, emulator: Emulator) -> Response:
        return JSONResponse(emulator.assets.get_container(kind, request.path_params["name"]))

    async def version(request: Request, emulator: Emulator) -> Response:
        p = request.path_params
        if request.method == "PUT":
            body = await _json(request)
            doc = await emulator.assets.put(kind, p["name"], p["version"], body)
            return JSONResponse(doc, status_code=201)
        return JSONResponse(emulator.assets.get(kind, p["name"], p["version"]))

    async def versions(request: Request, emulator: Emulator) -> Response:
        query = VersionQuery.parse(request.query_params)
        docs = emulator.assets.list_versions(kind, request.path_params["name"], query)
        return _page(request, emulator, docs)

    path = f"{WS}/{kind}"
    return [
        Route(path, arm(containers), methods=["GET"]),
        Route(path + "/{name}", arm(container), methods=["GET"]),
        Route(path + "/{name}/versions", arm(versions), methods=["GET"]),
        Route(path + "/{name}/versions/{version}", arm(version), methods=["GET", "PUT"]),
    ]


# datastores and computes


async def list_datastores(request: Request, emulator: Emulator) -> Response:
    q = request.query_params
    names = [n.strip() for n in q.get("names", "").split(",") if n.strip()]
    found = emulator.datastores.list_all(
        is_default=_flag(q.get("isDefault"), "isDefault"),
        names=names or None,
        search_text=q.get("searchText"),
    )
    return _page(request, emulator, found)


def _flag(text: str | None, what: str) -> bool | None:
    if text is None:
        return None
    if text.lower() not in ("true", "false"):
        raise bad_argument(f"{what} must be true or false; got {text[:40]!r}")
    return text.lower() == "true"


async def get_datastore(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.datastores.get(request.path_params["name"]))


async def list_computes(request: Request, emulator: Emulator) -> Response:
    # One attached Kubernetes compute, for Kubernetes online endpoints (computes.py).
    return _page(request, emulator, emulator.endpoints.computes.list_all())


async def get_compute(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.endpoints.computes.get(request.path_params["name"]))


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


_OPS = "/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/{loc}"

routes = [
    Route("/health", health, methods=["GET"]),
    Route(WS, arm(get_workspace), methods=["GET"]),
    Route(_OPS + "/mfeOperationsStatus/{op}", arm(operation_status), methods=["GET"]),
    Route(_OPS + "/mfeOperationResults/{op}", arm(operation_result), methods=["GET"]),
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
for _kind in ("models", "codes", "environments"):
    routes += _asset_routes(_kind)
routes += [
    Route(WS + "/datastores", arm(list_datastores), methods=["GET"]),
    Route(WS + "/datastores/{name}", arm(get_datastore), methods=["GET"]),
    Route(WS + "/computes", arm(list_computes), methods=["GET"]),
    Route(WS + "/computes/{name}", arm(get_compute), methods=["GET"]),
]
