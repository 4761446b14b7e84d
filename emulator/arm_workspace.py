"""The workspace's own control-plane routes: the workspace, operations, assets (models,
codes, environments), datastores and computes. Endpoints and deployments are in arm.py.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.arm_base import POLL_MS, WS, arm, flag, lro_headers, page, read_json
from emulator.assets import VersionQuery
from emulator.service import Emulator

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
    return JSONResponse(body, headers={"x-ms-retry-after-ms": POLL_MS})


async def operation_result(request: Request, emulator: Emulator) -> Response:
    doc = emulator.operations.get(request.path_params["op"])
    if doc["status"] == "InProgress":
        return Response(status_code=202, headers=lro_headers(request, emulator, doc["id"]))
    if doc["status"] == "Failed":
        error = doc.get("error") or {"code": "Failed", "message": "The operation failed."}
        return JSONResponse({"error": error}, status_code=400)
    return Response(status_code=200)


# assets


def _asset_routes(kind: str) -> list[Route]:
    async def containers(request: Request, emulator: Emulator) -> Response:
        view = request.query_params.get("listViewType", "ActiveOnly").lower()
        return page(request, emulator, emulator.assets.list_containers(kind, view=view))

    async def container(request: Request, emulator: Emulator) -> Response:
        return JSONResponse(emulator.assets.get_container(kind, request.path_params["name"]))

    async def version(request: Request, emulator: Emulator) -> Response:
        p = request.path_params
        if request.method == "PUT":
            body = await read_json(request)
            doc = await emulator.assets.put(kind, p["name"], p["version"], body)
            return JSONResponse(doc, status_code=201)
        return JSONResponse(emulator.assets.get(kind, p["name"], p["version"]))

    async def versions(request: Request, emulator: Emulator) -> Response:
        query = VersionQuery.parse(request.query_params)
        docs = emulator.assets.list_versions(kind, request.path_params["name"], query)
        return page(request, emulator, docs)

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
        is_default=flag(q.get("isDefault"), "isDefault"),
        names=names or None,
        search_text=q.get("searchText"),
    )
    return page(request, emulator, found)


async def get_datastore(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.datastores.get(request.path_params["name"]))


async def list_computes(request: Request, emulator: Emulator) -> Response:
    # One attached Kubernetes compute, for Kubernetes online endpoints (computes.py).
    return page(request, emulator, emulator.endpoints.computes.list_all())


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
]
for _kind in ("models", "codes", "environments"):
    routes += _asset_routes(_kind)
routes += [
    Route(WS + "/datastores", arm(list_datastores), methods=["GET"]),
    Route(WS + "/datastores/{name}", arm(get_datastore), methods=["GET"]),
    Route(WS + "/computes", arm(list_computes), methods=["GET"]),
    Route(WS + "/computes/{name}", arm(get_compute), methods=["GET"]),
]
