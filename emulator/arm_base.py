"""What every control-plane route shares: ARM's paths, authentication, bodies and pages.

Every ARM call needs `Authorization: Bearer <token>` with the token of the state
directory; anything else is 401. Any `api-version` is accepted. `arm` wraps a handler with
that check and the workspace scope, and turns ApiError into Azure's error shape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator import bodies
from emulator.auth import UNAUTHORIZED, has_arm_token
from emulator.errors import ApiError, bad_argument
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
POLL_MS = "250"
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


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, read no further than the control plane's size limit."""
    try:
        raw = await bodies.read_limited(request, bodies.MAX_BODY_BYTES)
    except bodies.TooLarge as exc:
        raise bodies.too_large(exc.size) from exc
    return bodies.parse_json(raw)


def lro_headers(request: Request, emulator: Emulator, op_id: str) -> dict[str, str]:
    api = request.query_params.get("api-version", "2023-04-01")
    ops = (
        f"{emulator.base_url}/subscriptions/{emulator.workspace.subscription_id}"
        f"/providers/{PROVIDER}/locations/{LOCATION}"
    )
    return {
        "Azure-AsyncOperation": f"{ops}/mfeOperationsStatus/{op_id}?api-version={api}",
        "Location": f"{ops}/mfeOperationResults/{op_id}?api-version={api}",
        "x-ms-async-operation-timeout": "PT1H",
        "x-ms-retry-after-ms": POLL_MS,
    }


def listing(items: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"value": items})


def page(request: Request, emulator: Emulator, items: list[dict[str, Any]]) -> JSONResponse:
    """One page of a listing in ARM's shape: `value`, and `nextLink` while more remain.

    `$skip` is the continuation token of `nextLink` (here, the offset); azure-ai-ml's pagers
    follow `nextLink` until it is absent. `count`, where the SDK sends it, is the page size.
    """
    skip = whole_number(request.query_params.get("$skip"), "$skip", minimum=0) or 0
    size = min(whole_number(request.query_params.get("count"), "count", minimum=1) or _PAGE, _PAGE)
    body: dict[str, Any] = {"value": items[skip : skip + size]}
    if skip + size < len(items):
        query = {**request.query_params, "$skip": str(skip + size)}
        body["nextLink"] = f"{emulator.base_url}{request.url.path}?{urlencode(query)}"
    return JSONResponse(body)


def whole_number(text: str | None, what: str, *, minimum: int) -> int | None:
    if text is None:
        return None
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else -1
    if value < minimum:
        raise bad_argument(f"{what} must be a whole number, {minimum} or more; got {text[:40]!r}")
    return value


def flag(text: str | None, what: str) -> bool | None:
    if text is None:
        return None
    if text.lower() not in ("true", "false"):
        raise bad_argument(f"{what} must be true or false; got {text[:40]!r}")
    return text.lower() == "true"
