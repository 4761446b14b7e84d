"""Endpoints and deployments as plain dataclasses, read through azure-ai-ml.

Pages never touch SDK entities: they get `EndpointView` and `DeploymentView`, built
here once. azure-core errors are translated into rollout errors at this boundary.

A workspace's endpoints come in one call (`list_endpoint_heads`: traffic, state and
scoring URI are on the endpoint itself); each endpoint's deployments in one call more
(`list_deployments`). `list_endpoints` makes the second kind of call for every endpoint at
once on a small shared pool of threads (`read_pool`), so that listing a workspace costs two
round trips to it, not one per endpoint. azure-ai-ml's operations keep no per-call state
(each call builds its request from the operation's fixed ids and runs it through the
client's azure-core pipeline, whose requests session and urllib3 pool are thread-safe), so
one MLClient serves the pool's threads.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from rollout.compute_rules import compute_label
from rollout.errors import NotFound, ServiceError
from rollout.workspace import Workspace

T = TypeVar("T")
_ASSET_ID = re.compile(r"/(?:models|environments|codes)/([^/]+)/versions/([^/]+)$", re.IGNORECASE)

# Reads in flight at once, for all sessions of the dashboard: a 30-endpoint workspace lists
# every deployment in one wave. ARM's read throttle is a bucket of 250 per subscription
# (refilled at 25 a second), so a burst of 32 is well inside it.
READ_WORKERS = 32
_POOL: ThreadPoolExecutor | None = None
_POOL_GUARD = threading.Lock()


def read_pool() -> ThreadPoolExecutor:
    """The process's pool of threads for reads in parallel (created on first use)."""
    global _POOL
    with _POOL_GUARD:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max_workers=READ_WORKERS, thread_name_prefix="bluegreen-read"
            )
        return _POOL


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
    compute_type: str = "Managed"  # or "Kubernetes"


@dataclass(frozen=True)
class EndpointHead:
    """One endpoint as the workspace's list of endpoints has it: no deployments yet."""

    name: str
    state: str
    auth_mode: str
    scoring_uri: str
    traffic: dict[str, int]  # as the service has it: only the deployments it names
    mirror: dict[str, int]  # positive shares only
    compute: str | None = None  # a Kubernetes endpoint's compute (ARM id); None: managed


@dataclass(frozen=True)
class EndpointView:
    name: str
    state: str
    auth_mode: str
    scoring_uri: str
    traffic: dict[str, int]
    mirror: dict[str, int]
    deployments: tuple[DeploymentView, ...]
    compute: str | None = None  # a Kubernetes endpoint's compute (ARM id); None: managed

    @property
    def kubernetes(self) -> bool:
        """Azure's rules differ on Kubernetes endpoints (no mirror traffic)."""
        return bool(self.compute)

    @property
    def compute_label(self) -> str:
        """'Managed', or 'Kubernetes: <compute name>'."""
        return compute_label(self.compute)

    @property
    def live_total(self) -> int:
        return sum(self.traffic.values())

    @property
    def head(self) -> EndpointHead:
        return EndpointHead(
            self.name,
            self.state,
            self.auth_mode,
            self.scoring_uri,
            {k: v for k, v in self.traffic.items() if v},
            dict(self.mirror),
            self.compute,
        )


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
    """Translate azure-core errors into rollout errors that say what failed and what to do."""
    try:
        yield
    except ResourceNotFoundError as exc:
        raise NotFound(f"{what}: {exc.message}") from exc
    except ClientAuthenticationError as exc:
        first = (exc.message or "").splitlines()[0] if exc.message else ""
        raise ServiceError(
            f"{what}: not signed in to Azure: run `az login` (or set AZURE_CLIENT_ID, "
            f"AZURE_TENANT_ID and AZURE_CLIENT_SECRET), then connect again ({first})"
        ) from exc
    except ServiceRequestError as exc:
        raise ServiceError(f"{what}: the workspace could not be reached ({exc.message})") from exc
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise ServiceError(
                f"{what}: your identity has no access to it ({exc.message}); ask for the AzureML "
                "Data Scientist role (or Reader, for read-only use) on the workspace"
            ) from exc
        raise ServiceError(f"{what}: {exc.message}") from exc


def service_call(what: str, fn: Callable[[], T]) -> T:
    """`fn()`, its azure-core errors translated (`service_errors`)."""
    with service_errors(what):
        return fn()


def weight(mapping: Mapping[str, int], deployment: str) -> int:
    """A deployment's share in a traffic map, case-insensitively (the SDK lower-cases keys)."""
    wanted = deployment.lower()
    return next((int(v) for k, v in mapping.items() if k.lower() == wanted), 0)


def _deployment_view(entity: Any) -> DeploymentView:
    settings = entity.request_settings
    return DeploymentView(
        name=entity.name,
        state=_state(entity.provisioning_state),
        model=asset_label(entity.model),
        instance_type=entity.instance_type or "-",
        instance_count=int(entity.instance_count or 0),
        live=0,
        mirror=0,
        request_timeout_ms=getattr(settings, "request_timeout_ms", None),
        max_concurrent_requests=getattr(settings, "max_concurrent_requests_per_instance", None),
        compute_type="Kubernetes" if str(entity.type).lower() == "kubernetes" else "Managed",
    )


def _head(entity: Any) -> EndpointHead:
    mirror = {k: int(v) for k, v in (getattr(entity, "mirror_traffic", None) or {}).items()}
    return EndpointHead(
        name=entity.name,
        state=_state(entity.provisioning_state),
        auth_mode=str(entity.auth_mode),
        scoring_uri=entity.scoring_uri or "",
        traffic={k: int(v) for k, v in (entity.traffic or {}).items() if int(v)},
        mirror={k: v for k, v in mirror.items() if v},
        compute=getattr(entity, "compute", None) or None,
    )


def endpoint_view(head: EndpointHead, deployments: tuple[DeploymentView, ...]) -> EndpointView:
    """An endpoint with its deployments, each given its live and mirror share."""
    traffic = dict(head.traffic)
    for d in deployments:
        if not any(k.lower() == d.name.lower() for k in traffic):
            traffic[d.name] = 0
    return EndpointView(
        name=head.name,
        state=head.state,
        auth_mode=head.auth_mode,
        scoring_uri=head.scoring_uri,
        traffic=traffic,
        mirror=dict(head.mirror),
        compute=head.compute,
        deployments=tuple(
            sorted(
                (
                    replace(
                        d, live=weight(head.traffic, d.name), mirror=weight(head.mirror, d.name)
                    )
                    for d in deployments
                ),
                key=lambda v: v.name,
            )
        ),
    )


def list_endpoint_heads(ws: Workspace) -> list[EndpointHead]:
    """The workspace's endpoints, by name, without their deployments: one call."""
    try:
        entities = service_call(
            "listing endpoints", lambda: list(ws.ml_client.online_endpoints.list())
        )
    except NotFound as exc:
        raise NotFound(
            f"workspace '{ws.workspace_name}' was not found in resource group "
            f"'{ws.resource_group}' of subscription '{ws.subscription_id}': check the three "
            "names"
        ) from exc
    return sorted((_head(e) for e in entities), key=lambda h: h.name)


def list_deployments(ws: Workspace, endpoint: str) -> tuple[DeploymentView, ...]:
    """The deployments of `endpoint`, by name: one call.

    Their `live` and `mirror` are 0 here, as the shares are the endpoint's: `endpoint_view`
    fills them in from its head.
    """
    entities = service_call(
        f"listing deployments of '{endpoint}'",
        lambda: list(ws.ml_client.online_deployments.list(endpoint)),
    )
    return tuple(sorted((_deployment_view(d) for d in entities), key=lambda v: v.name))


def list_endpoints(ws: Workspace) -> list[EndpointView]:
    """Every online endpoint of the workspace with its deployments: two round trips, the
    deployments of all endpoints being listed at once. An endpoint deleted between the two
    is left out."""
    heads = list_endpoint_heads(ws)
    futures = [read_pool().submit(list_deployments, ws, h.name) for h in heads]
    views = []
    for head, future in zip(heads, futures, strict=True):
        try:
            views.append(endpoint_view(head, future.result()))
        except NotFound:
            continue
    return views


def get_endpoint(ws: Workspace, name: str) -> EndpointView:
    """One endpoint with its deployments, read fresh; raises NotFound when it does not exist."""
    deployments = read_pool().submit(list_deployments, ws, name)
    entity = service_call(
        f"reading endpoint '{name}'", lambda: ws.ml_client.online_endpoints.get(name)
    )
    return endpoint_view(_head(entity), deployments.result())


def get_logs(
    ws: Workspace,
    endpoint: str,
    deployment: str,
    *,
    lines: int = 200,
    container: str = "inference-server",
) -> str:
    """The last `lines` lines of a deployment's inference-server (or storage-initializer) log."""
    return str(
        service_call(
            f"reading the logs of '{deployment}'",
            lambda: ws.ml_client.online_deployments.get_logs(
                deployment, endpoint, lines, container_type=container
            ),
        )
    )


def scoring_credential(ws: Workspace, endpoint: str) -> str:
    """The bearer credential for scoring: the primary key, or a token in token auth modes."""
    creds = service_call(
        f"reading the keys of '{endpoint}'",
        lambda: ws.ml_client.online_endpoints.get_keys(endpoint),
    )
    value = getattr(creds, "primary_key", None) or getattr(creds, "access_token", None)
    if not value:
        raise ServiceError(f"endpoint '{endpoint}' returned no key or token for scoring")
    return str(value)


def mask(secret: str) -> str:
    """A secret as it may be shown: its last four characters only."""
    return "•" * 8 + secret[-4:] if len(secret) > 8 else "•" * len(secret)
