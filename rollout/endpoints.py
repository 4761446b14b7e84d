"""Endpoints and deployments as plain dataclasses, read through azure-ai-ml.

Pages never touch SDK entities: they get `EndpointView` and `DeploymentView`, built
here once. azure-core errors are translated into rollout errors at this boundary.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from rollout import conditions, rules
from rollout.errors import Conflict, NotFound, ServiceError
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


# changes: every one is validated with rules.py first, then get -> modify -> PUT


@dataclass
class Operation:
    """A long-running change in flight: poll `done()`/`status()`, then `result()`."""

    description: str
    poller: Any
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def done(self) -> bool:
        return bool(self.poller.done())

    def status(self) -> str:
        return str(self.poller.status())

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the end; raises ServiceError with the service's message when it failed."""
        with service_errors(self.description):
            return self.poller.result(timeout=timeout)


def _canonical(values: Mapping[str, int]) -> dict[str, int]:
    return rules.normalize_traffic({k: int(v) for k, v in values.items()})


def begin_set_traffic(
    ws: Workspace,
    endpoint: str,
    *,
    traffic: Mapping[str, int],
    mirror: Mapping[str, int],
    expected_traffic: Mapping[str, int] | None = None,
    expected_mirror: Mapping[str, int] | None = None,
) -> Operation:
    """Start changing an endpoint's live and mirror traffic.

    Validated with Azure's rules before anything is sent. When `expected_*` is given
    (what the page showed), a traffic setting that changed since then raises Conflict
    instead of being overwritten: the endpoint is read fresh and compared, under this
    process's lock for the endpoint, and the PUT carries the ETag of that read as
    If-Match, so a change that reached the service in between is refused too (412).
    """
    what = f"updating the traffic of '{endpoint}'"
    with (
        conditions.one_change_at_a_time(ws.key, endpoint),
        conditions.if_match(ws.resource_path(endpoint)),
    ):
        entity = _call(
            f"reading endpoint '{endpoint}'", lambda: ws.ml_client.online_endpoints.get(endpoint)
        )
        deployments = _call(
            f"listing deployments of '{endpoint}'",
            lambda: [d.name for d in ws.ml_client.online_deployments.list(endpoint)],
        )
        rules.raise_for(rules.check_traffic(endpoint, deployments, traffic, mirror))
        current_traffic = _canonical(entity.traffic or {})
        current_mirror = _canonical(entity.mirror_traffic or {})
        if expected_traffic is not None and (
            _canonical(expected_traffic) != current_traffic
            or _canonical(expected_mirror or {}) != current_mirror
        ):
            raise Conflict(
                f"the traffic of '{endpoint}' changed since this page loaded it: it is now live "
                f"{_describe(current_traffic)}, mirror {_describe(current_mirror)}. Nothing was "
                "sent; review the new state and apply again."
            )
        entity.traffic = {k: int(v) for k, v in traffic.items()}
        entity.mirror_traffic = {k: int(v) for k, v in mirror.items() if int(v)}
        poller = _conditional_put(
            what,
            lambda: ws.ml_client.online_endpoints.begin_create_or_update(entity),
            lambda: _traffic_changed(ws, endpoint),
        )
    return Operation(what, poller)


def _conditional_put(what: str, put: Callable[[], T], conflict: Callable[[], str]) -> T:
    """`put`, with a 412 (the If-Match was stale) turned into Conflict(conflict())."""
    with service_errors(what):
        try:
            return put()
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise Conflict(conflict()) from exc
            raise


def _traffic_changed(ws: Workspace, endpoint: str) -> str:
    try:
        entity = ws.ml_client.online_endpoints.get(endpoint)
        now = (
            f": it is now live {_describe(_canonical(entity.traffic or {}))}, "
            f"mirror {_describe(_canonical(entity.mirror_traffic or {}))}"
        )
    except HttpResponseError:
        now = ""
    return (
        f"the traffic of '{endpoint}' changed since this page loaded it (another change "
        f"reached the service while this one was being sent){now}. Nothing was changed; "
        "review the new state and apply again."
    )


def _describe(values: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}%" for k, v in sorted(values.items())) or "none"


def begin_scale(ws: Workspace, endpoint: str, deployment: str, instance_count: int) -> Operation:
    """Start scaling a deployment to `instance_count` instances (1-50).

    The deployment is read and PUT back with the new count, under this process's lock for
    the endpoint and with the read's ETag as If-Match: a change someone else made to the
    deployment in between is refused (Conflict), not overwritten with the old spec.
    """
    rules.raise_for(rules.check_instance_count(endpoint, deployment, instance_count))
    what = f"scaling '{deployment}' of '{endpoint}' to {instance_count} instance(s)"
    with (
        conditions.one_change_at_a_time(ws.key, endpoint),
        conditions.if_match(ws.resource_path(endpoint, deployment)),
    ):
        entity = _call(
            f"reading deployment '{deployment}'",
            lambda: ws.ml_client.online_deployments.get(deployment, endpoint),
        )
        entity.instance_count = instance_count
        poller = _conditional_put(
            what,
            lambda: ws.ml_client.online_deployments.begin_create_or_update(entity),
            lambda: (
                f"deployment '{deployment}' of '{endpoint}' changed while it was being scaled "
                "(another change reached the service between this dashboard's read and its "
                "write). Nothing was changed; review the deployment and scale again."
            ),
        )
    return Operation(what, poller)


def begin_delete_deployment(ws: Workspace, endpoint: str, deployment: str) -> Operation:
    """Start deleting a deployment; refused while it has live (or mirror) traffic."""
    with conditions.one_change_at_a_time(ws.key, endpoint):
        entity = _call(
            f"reading endpoint '{endpoint}'", lambda: ws.ml_client.online_endpoints.get(endpoint)
        )
        rules.raise_for(
            rules.check_delete_deployment(
                endpoint,
                deployment,
                {k: int(v) for k, v in (entity.traffic or {}).items()},
                {k: int(v) for k, v in (entity.mirror_traffic or {}).items()},
            )
        )
        what = f"deleting deployment '{deployment}' of '{endpoint}'"
        poller = _call(
            what, lambda: ws.ml_client.online_deployments.begin_delete(deployment, endpoint)
        )
    return Operation(what, poller)


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
        _call(
            f"reading the logs of '{deployment}'",
            lambda: ws.ml_client.online_deployments.get_logs(
                deployment, endpoint, lines, container_type=container
            ),
        )
    )


def scoring_credential(ws: Workspace, endpoint: str) -> str:
    """The bearer credential for scoring: the primary key, or a token in token auth modes."""
    creds = _call(
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
