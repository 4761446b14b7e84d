"""Endpoints and deployments as plain dataclasses, read through azure-ai-ml.

Pages never touch SDK entities: they get `EndpointView` and `DeploymentView`, built
here once. azure-core errors are translated into rollout errors at this boundary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from rollout.errors import NotFound, ServiceError
from rollout.workspace import Workspace

T = TypeVar("T")
_ASSET_ID = re.compile(r"/(?:models|environments|codes)/([^/]+)/versions/([^/]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class DeploymentView:
    name: str
    state: str
    model: str
    instance_type: str
    instance_count: int
    live: int
    mirror: int
    request_timeout_ms: int | None
    max_concurrent_requests: int | None


@dataclass(frozen=True)
class EndpointView:
    name: str
    state: str
    auth_mode: str
    scoring_uri: str
    traffic: dict[str, int]
    mirror: dict[str, int]
    deployments: tuple[DeploymentView, ...]

    @property
    def live_total(self) -> int:
        return sum(self.traffic.values())


def asset_label(asset: object) -> str:
    """'model-1:1' for an asset ARM id or entity; the raw text otherwise."""
    if asset is None:
        return "-"
    name, version = getattr(asset, "name", None), getattr(asset, "version", None)
    if name and version:
        return f"{name}:{version}"
    match = _ASSET_ID.search(str(asset))
    return f"{match.group(1)}:{match.group(2)}" if match else str(asset)


def _state(value: object) -> str:
    text = str(getattr(value, "value", value) or "Unknown")
    return text[:1].upper() + text[1:].lower() if text.isupper() else text


@contextmanager
def service_errors(what: str) -> Iterator[None]:
    """Translate azure-core errors into rollout errors that say what failed."""
    try:
        yield
    except ResourceNotFoundError as exc:
        raise NotFound(f"{what}: {exc.message}") from exc
    except ClientAuthenticationError as exc:
        raise ServiceError(f"{what}: not authorized ({exc.message})") from exc
    except ServiceRequestError as exc:
        raise ServiceError(f"{what}: the workspace could not be reached ({exc.message})") from exc
    except HttpResponseError as exc:
        raise ServiceError(f"{what}: {exc.message}") from exc


def _call(what: str, fn: Callable[[], T]) -> T:
    with service_errors(what):
        return fn()


def _deployment_view(
    entity: Any, traffic: dict[str, int], mirror: dict[str, int]
) -> DeploymentView:
    settings = entity.request_settings
    return DeploymentView(
        name=entity.name,
        state=_state(entity.provisioning_state),
        model=asset_label(entity.model),
        instance_type=entity.instance_type or "-",
        instance_count=int(entity.instance_count or 0),
        live=int(traffic.get(entity.name, 0)),
        mirror=int(mirror.get(entity.name, 0)),
        request_timeout_ms=getattr(settings, "request_timeout_ms", None),
        max_concurrent_requests=getattr(settings, "max_concurrent_requests_per_instance", None),
    )


def _endpoint_view(ws: Workspace, entity: Any) -> EndpointView:
    deployments = _call(
        f"listing deployments of '{entity.name}'",
        lambda: list(ws.ml_client.online_deployments.list(entity.name)),
    )
    traffic = {k: int(v) for k, v in (entity.traffic or {}).items()}
    mirror = {k: int(v) for k, v in (getattr(entity, "mirror_traffic", None) or {}).items()}
    for d in deployments:
        traffic.setdefault(d.name, 0)
    return EndpointView(
        name=entity.name,
        state=_state(entity.provisioning_state),
        auth_mode=str(entity.auth_mode),
        scoring_uri=entity.scoring_uri or "",
        traffic=traffic,
        mirror={k: v for k, v in mirror.items() if v},
        deployments=tuple(
            sorted(
                (_deployment_view(d, traffic, mirror) for d in deployments), key=lambda v: v.name
            )
        ),
    )


def list_endpoints(ws: Workspace) -> list[EndpointView]:
    """Every online endpoint of the workspace with its deployments."""
    entities = _call("listing endpoints", lambda: list(ws.ml_client.online_endpoints.list()))
    return [_endpoint_view(ws, e) for e in sorted(entities, key=lambda e: e.name)]


def get_endpoint(ws: Workspace, name: str) -> EndpointView:
    """One endpoint; raises NotFound when it does not exist."""
    entity = _call(f"reading endpoint '{name}'", lambda: ws.ml_client.online_endpoints.get(name))
    return _endpoint_view(ws, entity)
