"""Azure's rules for where a deployment runs: managed, or on a Kubernetes compute.

A Kubernetes online endpoint (one with a `compute`) takes Kubernetes online deployments
only, and a managed endpoint managed ones only; a Kubernetes deployment's instance type
must be one its compute defines. The mirror rule of Kubernetes endpoints is in
`rollout.rules.check_traffic` (`kubernetes=True`). Like `rollout.rules`, each check returns
every violation it finds, and both the emulator and the dashboard use them.
"""

from __future__ import annotations

from collections.abc import Collection

from rollout.errors import Violation

__all__ = ["check_compute_type", "check_instance_type", "compute_label"]


def compute_label(compute: str | None) -> str:
    """'Managed', or 'Kubernetes: k8s-compute' for an endpoint on that compute (name or ARM id)."""
    if not compute:
        return "Managed"
    return f"Kubernetes: {compute.rstrip('/').rsplit('/', 1)[-1]}"


def check_compute_type(
    endpoint: str, deployment: str, *, endpoint_compute: str | None, deployment_type: str
) -> list[Violation]:
    """A deployment's `endpointComputeType` must match its endpoint's kind."""
    kubernetes = deployment_type.lower() == "kubernetes"
    if kubernetes == bool(endpoint_compute):
        return []
    if endpoint_compute:
        message = (
            f"deployment {deployment!r} is a {deployment_type} online deployment, but endpoint "
            f"{endpoint!r} is a Kubernetes online endpoint ({compute_label(endpoint_compute)}); "
            "create a Kubernetes online deployment for it"
        )
    else:
        message = (
            f"deployment {deployment!r} is a Kubernetes online deployment, but endpoint "
            f"{endpoint!r} is a managed online endpoint; create a managed online deployment "
            "for it, or create it on a Kubernetes online endpoint"
        )
    return [Violation("DeploymentComputeTypeMismatch", message, deployment)]


def check_instance_type(
    endpoint: str, deployment: str, instance_type: str, *, compute: str, valid: Collection[str]
) -> list[Violation]:
    """A Kubernetes deployment's instance type must be one its compute defines."""
    if instance_type.lower() in {v.lower() for v in valid}:
        return []
    choices = ", ".join(repr(v) for v in sorted(valid)) or "none"
    return [
        Violation(
            "InstanceTypeNotFound",
            f"instance type {instance_type!r} of deployment {deployment!r} (endpoint "
            f"{endpoint!r}) is not defined on Kubernetes compute {compute!r}; its instance "
            f"types are: {choices}",
            deployment,
        )
    ]
