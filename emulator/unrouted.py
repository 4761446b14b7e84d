"""Answers for requests no route takes: an unknown path (404) or a wrong method (405).

The control plane answers them as Azure Resource Manager does, in its JSON error shape
`{"error": {"code": ..., "message": ...}}`, after the same bearer check as every ARM
route (ARM authenticates a request before it looks at the path). The scoring path keeps
the data plane's own shape (`{"message": ...}`, scoring.py).

Codes, as ARM documents them:
- a path under `/providers/{namespace}/` whose resource type the emulator does not serve:
  404 `InvalidResourceType`, "The resource type '{type}' could not be found in the
  namespace '{namespace}' for api version '{version}'" (learn.microsoft.com/azure/
  azure-resource-manager/troubleshooting/error-register-resource-provider);
- any other unknown path: 404 `NotFound` (learn.microsoft.com/azure/azure-resource-manager/
  troubleshooting/error-not-found, "Code=NotFound");
- a known path with a method it does not take: 405 `MethodNotAllowed` with the `Allow`
  header HTTP requires (RFC 9110, section 15.5.6); ARM documents no code of its own for it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ExceptionHandler

from emulator.auth import UNAUTHORIZED, has_arm_token

_SCORING_PREFIX = "/online/"
_SERVED = (
    "the emulator serves the workspace, online endpoints and their deployments, keys and "
    "logs; model, code and environment assets; the default datastore; one attached "
    "Kubernetes compute; and Azure Monitor metrics"
)


async def not_found(request: Request, exc: Exception) -> Response:
    path = request.url.path
    if path.startswith(_SCORING_PREFIX):
        return JSONResponse({"message": f"No scoring route at {path[:200]}."}, status_code=404)
    if not has_arm_token(request):
        return _error(401, "AuthenticationFailed", UNAUTHORIZED)
    namespace, resource_type = _resource_type(path)
    if namespace:
        api = request.query_params.get("api-version", "")
        return _error(
            404,
            "InvalidResourceType",
            f"The resource type '{resource_type}' could not be found in the namespace "
            f"'{namespace}' for api version '{api[:40]}'. Not in the local emulator: {_SERVED}.",
        )
    return _error(404, "NotFound", f"No resource at {path[:200]}: {_SERVED}.")


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    allowed = _allowed_methods(request)
    path = request.url.path
    message = f"{path[:200]} does not take {request.method}; it takes {', '.join(allowed)}."
    headers = {"Allow": ", ".join(allowed)}
    if path.startswith(_SCORING_PREFIX):
        return JSONResponse({"message": message}, status_code=405, headers=headers)
    if not has_arm_token(request):
        return _error(401, "AuthenticationFailed", UNAUTHORIZED)
    return _error(405, "MethodNotAllowed", message, headers=headers)


def _error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    body = {"error": {"code": code, "message": message, "details": []}}
    return JSONResponse(body, status_code=status, headers=headers)


def _resource_type(path: str) -> tuple[str, str]:
    """The namespace and resource type a provider path names ('' when it names none).

    `/providers/{ns}/{type}/{name}/{type}/...` names the type `{type}/{type}/...`.
    """
    parts = [p for p in path.split("/") if p]
    lowered = [p.lower() for p in parts]
    if "providers" not in lowered:
        return "", ""
    at = len(lowered) - 1 - lowered[::-1].index("providers")
    rest = parts[at + 1 :]
    if not rest:
        return "", ""
    return rest[0], "/".join(rest[1::2])


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes for this path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": "GET"})
            if match != Match.NONE:
                methods |= route.methods
    return sorted(methods)


exception_handlers: dict[int | type[Exception], ExceptionHandler] = {
    404: not_found,
    405: method_not_allowed,
}
