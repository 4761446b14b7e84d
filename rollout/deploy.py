"""Starting a rollout: create an endpoint, add a deployment to one, delete an endpoint.

What a new deployment is made of (from a YAML, or like an existing one) is built in
specs.py; here it is sent. A new deployment takes no live traffic: creating one never
changes the endpoint's traffic, which the SDK reads back as 0% for it.

Each change is checked with Azure's rules (rules.py) against a fresh read before anything
is sent, runs under this process's lock for the endpoint (conditions.py), and returns an
`Operation` to follow. Local model and code folders go through `Workspace.prepare_assets`:
on Azure the SDK uploads them, on the emulator they are registered first (workspace.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

from azure.ai.ml.entities import ManagedOnlineEndpoint
from azure.ai.ml.exceptions import MlException
from azure.core.exceptions import ResourceNotFoundError

from rollout import conditions, rules
from rollout.changes import Operation
from rollout.endpoints import list_deployments, service_call, service_errors
from rollout.errors import RolloutError, ServiceError, Violation
from rollout.specs import (
    InvalidDeploymentFile,
    LocalModel,
    ModelChoice,
    NewDeployment,
    RegisteredModel,
    check_like_form,
    check_new_deployment,
    deployment_like,
    describe,
    first_line,
    load_deployment_yaml,
    model_name,
)
from rollout.workspace import Workspace

# What the UI calls is here; the specs of a new deployment come along.
__all__ = [
    "AUTH_MODES",
    "AuthMode",
    "InvalidDeploymentFile",
    "LocalModel",
    "ModelChoice",
    "NewDeployment",
    "RegisteredModel",
    "begin_create_deployment",
    "begin_create_endpoint",
    "begin_delete_endpoint",
    "check_endpoint_form",
    "check_like_form",
    "check_new_deployment",
    "deployment_like",
    "describe",
    "list_model_versions",
    "load_deployment_yaml",
    "model_name",
    "plan_like",
]

T = TypeVar("T")
AuthMode = Literal["key", "aml_token"]
AUTH_MODES: tuple[AuthMode, ...] = ("key", "aml_token")
# UNCONFIRMED in Azure's documents (the emulator's limit, README): longer is refused there.
MAX_DESCRIPTION = 1024


# --- endpoints ---------------------------------------------------------------------------


def check_endpoint_form(
    existing: Collection[str], name: str, auth_mode: str, description: str
) -> list[Violation]:
    """Everything wrong with a new endpoint as typed, before anything is sent."""
    found = rules.check_new_endpoint(existing, name)
    if auth_mode not in AUTH_MODES:
        found.append(
            Violation(
                "InvalidAuthMode",
                f"auth mode {auth_mode!r} is not one of {', '.join(AUTH_MODES)}",
            )
        )
    if len(description) > MAX_DESCRIPTION:
        found.append(
            Violation(
                "InvalidDescription",
                f"the description is {len(description)} characters long; keep it to "
                f"{MAX_DESCRIPTION}",
            )
        )
    return found


def _endpoint_exists(ws: Workspace, name: str) -> bool:
    def get() -> bool:
        try:
            ws.ml_client.online_endpoints.get(name)
        except ResourceNotFoundError:
            return False
        return True

    return service_call(f"reading endpoint '{name}'", get)


def begin_create_endpoint(
    ws: Workspace, name: str, *, auth_mode: AuthMode = "key", description: str = ""
) -> Operation:
    """Start creating a managed online endpoint; refused when the name is taken or invalid.

    It starts with no deployments and no traffic.
    """
    rules.raise_for(check_endpoint_form((), name, auth_mode, description))
    what = f"creating endpoint '{name}'"
    with conditions.one_change_at_a_time(ws.key, name):
        if _endpoint_exists(ws, name):
            rules.raise_for(rules.check_new_endpoint([name], name))
        entity = ManagedOnlineEndpoint(
            name=name, auth_mode=auth_mode, description=description or None
        )
        poller = _sdk_call(
            what, lambda: ws.ml_client.online_endpoints.begin_create_or_update(entity)
        )
    return Operation(what, poller)


def begin_delete_endpoint(ws: Workspace, name: str) -> Operation:
    """Start deleting an endpoint and every deployment it has (Azure's rule: no check of
    traffic, the endpoint goes as a whole)."""
    what = f"deleting endpoint '{name}'"
    with conditions.one_change_at_a_time(ws.key, name):
        poller = service_call(what, lambda: ws.ml_client.online_endpoints.begin_delete(name=name))
    return Operation(what, poller)


def begin_create_deployment(ws: Workspace, new: NewDeployment) -> Operation:
    """Start creating `new` on its endpoint, at 0% live traffic.

    Refused when the name is invalid or taken, or the endpoint has 20 deployments (a fresh
    listing decides). Its local folders are made ready for the workspace first
    (`Workspace.prepare_assets`); on Azure the SDK uploads them as part of this call.
    """
    endpoint, name = new.endpoint, new.name
    rules.raise_for(rules.check_instance_count(endpoint, name, new.instance_count))
    what = f"creating deployment '{name}' of '{endpoint}'"
    with conditions.one_change_at_a_time(ws.key, endpoint):
        existing = [d.name for d in list_deployments(ws, endpoint)]
        rules.raise_for(check_new_deployment(endpoint, existing, name))
        entity = ws.prepare_assets(copy.deepcopy(new.entity))
        poller = _sdk_call(
            what, lambda: ws.ml_client.online_deployments.begin_create_or_update(entity)
        )
    return Operation(what, poller)


def plan_like(
    ws: Workspace,
    endpoint: str,
    source: str,
    *,
    name: str,
    model: ModelChoice | None = None,
    code: Path | None = None,
    instance_count: int | None = None,
    instance_type: str | None = None,
) -> NewDeployment:
    """A new deployment like `source` of `endpoint` (read fresh), with the changes given."""
    existing = service_call(
        f"reading deployment '{source}'",
        lambda: ws.ml_client.online_deployments.get(source, endpoint),
    )
    entity = deployment_like(
        existing,
        name=name,
        model=model,
        code=code,
        instance_count=instance_count,
        instance_type=instance_type,
    )
    return describe(entity, source=f"like '{source}'")


def list_model_versions(ws: Workspace, name: str) -> list[str]:
    """The registered versions of model `name`, newest first (numbers compare as numbers)."""

    def versions() -> list[str]:
        try:
            return [str(m.version) for m in ws.ml_client.models.list(name=name)]
        except ResourceNotFoundError:
            return []

    found = service_call(f"listing the versions of model '{name}'", versions)
    return sorted(found, key=lambda v: (v.isdigit(), int(v) if v.isdigit() else 0, v), reverse=True)


def _sdk_call(what: str, fn: Callable[[], T]) -> T:
    """`fn()` with azure-core errors translated, and azure-ai-ml's own (validation, upload)
    too: those are not azure-core HTTP errors."""
    with _ml_errors(what), service_errors(what):
        return fn()


@contextmanager
def _ml_errors(what: str) -> Iterator[None]:
    try:
        yield
    except RolloutError:
        raise
    except MlException as exc:
        raise ServiceError(f"{what}: {first_line(exc)}") from exc
