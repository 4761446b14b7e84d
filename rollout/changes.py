"""Changes to endpoints and deployments: traffic, scale, delete.

Each is validated with Azure's rules (rules.py) before anything is sent, built from a fresh
read of the resource (never from what a page showed, which may be seconds old), and sent
with that read's ETag as If-Match under this process's lock for the endpoint
(conditions.py), so that a racing change is refused rather than overwritten. A change
returns an `Operation` to follow; the page then drops or replaces what it had cached
(reads.py), so the state the change left is what it shows next.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.core.exceptions import HttpResponseError

from rollout import conditions, rules
from rollout.endpoints import list_deployments, read_pool, service_call, service_errors
from rollout.errors import Conflict
from rollout.workspace import Workspace

T = TypeVar("T")


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
        # The deployments are listed on another thread while the endpoint is read here: the
        # If-Match scope (a contextvar) stays with the endpoint's GET and its PUT.
        listing = read_pool().submit(list_deployments, ws, endpoint)
        entity = service_call(
            f"reading endpoint '{endpoint}'", lambda: ws.ml_client.online_endpoints.get(endpoint)
        )
        deployments = [d.name for d in listing.result()]
        kubernetes = bool(getattr(entity, "compute", None))
        rules.raise_for(
            rules.check_traffic(endpoint, deployments, traffic, mirror, kubernetes=kubernetes)
        )
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
        entity = service_call(
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
        entity = service_call(
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
        poller = service_call(
            what, lambda: ws.ml_client.online_deployments.begin_delete(deployment, endpoint)
        )
    return Operation(what, poller)
