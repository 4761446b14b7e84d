"""A Kubernetes compute's instance types, read through azure-ai-ml, for the Deploy page.

A Kubernetes online deployment picks one of the instance types its endpoint's compute
defines (Azure's managed SKUs do not apply), so the form offers exactly those.
"""

from __future__ import annotations

from collections.abc import Collection

from rollout import compute_rules
from rollout.endpoints import service_call
from rollout.errors import Violation
from rollout.specs import NewDeployment
from rollout.workspace import Workspace


def compute_name(compute: str) -> str:
    """'k8s-compute' for a compute's ARM id (or its bare name)."""
    return compute.rstrip("/").rsplit("/", 1)[-1]


def list_instance_types(ws: Workspace, compute: str) -> list[str]:
    """The instance types Kubernetes compute `compute` defines, its default first."""
    name = compute_name(compute)
    entity = service_call(f"reading compute '{name}'", lambda: ws.ml_client.compute.get(name))
    props = dict(getattr(entity, "properties", None) or {})
    types = sorted(props.get("instanceTypes") or props.get("instance_types") or {})
    default = props.get("defaultInstanceType") or props.get("default_instance_type")
    if default in types:
        types.remove(default)
        types.insert(0, default)
    return types


def check_placement(
    new: NewDeployment, *, compute: str | None, instance_types: Collection[str]
) -> list[Violation]:
    """A new deployment must be of its endpoint's kind, with one of the compute's types."""
    kind = str(getattr(new.entity, "type", None) or "Managed")
    found = compute_rules.check_compute_type(
        new.endpoint, new.name, endpoint_compute=compute, deployment_type=kind
    )
    if compute and not found and new.instance_type not in ("", "-"):
        found += compute_rules.check_instance_type(
            new.endpoint,
            new.name,
            new.instance_type,
            compute=compute_name(compute),
            valid=instance_types,
        )
    return found
