"""The workspace's computes: one attached Kubernetes cluster, `k8s-compute`.

Kubernetes online endpoints name a compute (`properties.compute`, an ARM id: azure-ai-ml
turns a bare name into one) and their deployments pick an instance type the cluster admin
defined on it. The emulator offers one attached Kubernetes compute, shaped as Azure's
KubernetesCompute reads it, with two instance types; its instances still run as local
processes, like those of managed deployments.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import ApiError
from emulator.store import Doc
from emulator.workspace import LOCATION, PROVIDER, WORKSPACE

KUBERNETES_COMPUTE = "k8s-compute"
DEFAULT_INSTANCE_TYPE = "defaultinstancetype"
# As `az ml compute attach --type Kubernetes` shows them: Kubernetes resource requests and
# limits per instance type ("defaultinstancetype" is the one Azure creates).
INSTANCE_TYPES: dict[str, dict[str, Any]] = {
    DEFAULT_INSTANCE_TYPE: {
        "nodeSelector": None,
        "resources": {
            "requests": {"cpu": "100m", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": None},
        },
    },
    "largecpu": {
        "nodeSelector": None,
        "resources": {
            "requests": {"cpu": "1", "memory": "8Gi"},
            "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": None},
        },
    },
}


class Computes:
    """The computes of the workspace at `workspace_path` (fixed: one Kubernetes compute)."""

    def __init__(self, workspace_path: str) -> None:
        self.workspace_path = workspace_path

    def _doc(self, name: str) -> Doc:
        return {
            "id": f"{self.workspace_path}/computes/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/computes",
            "location": LOCATION,
            "tags": {},
            "identity": None,
            "properties": {
                "computeType": "Kubernetes",
                "computeLocation": LOCATION,
                "description": "Attached Kubernetes cluster (emulated: instances run locally)",
                "provisioningState": "Succeeded",
                "isAttachedCompute": True,
                "resourceId": None,
                "properties": {
                    "namespace": "default",
                    "defaultInstanceType": DEFAULT_INSTANCE_TYPE,
                    "instanceTypes": INSTANCE_TYPES,
                },
            },
        }

    def list_all(self) -> list[Doc]:
        return [self._doc(KUBERNETES_COMPUTE)]

    def get(self, name: str) -> Doc:
        if name.lower() != KUBERNETES_COMPUTE:
            raise ApiError(
                404,
                "ResourceNotFound",
                f"Compute '{name}' not found in workspace '{WORKSPACE}'; its computes are: "
                f"'{KUBERNETES_COMPUTE}'.",
            )
        return self._doc(KUBERNETES_COMPUTE)

    def resolve(self, reference: str, *, what: str) -> Doc:
        """The compute an endpoint's `properties.compute` names (ARM id or bare name).

        Refused (400, naming the compute) when it is not a compute of this workspace.
        """
        text = reference.removeprefix("azureml:")
        prefix = f"{self.workspace_path}/computes/"
        if "/" in text:
            name = text[len(prefix) :] if text.lower().startswith(prefix.lower()) else ""
        else:
            name = text
        if name.lower() != KUBERNETES_COMPUTE:
            raise ApiError(
                400,
                "BadArgument",
                f"compute '{reference}' of {what} was not found in workspace '{WORKSPACE}'; "
                f"attach it first, or use one of its computes: '{prefix}{KUBERNETES_COMPUTE}'",
            )
        return self._doc(KUBERNETES_COMPUTE)


def instance_types(compute: Doc) -> dict[str, Any]:
    """The instance types a Kubernetes compute defines, by name."""
    return dict(compute["properties"]["properties"]["instanceTypes"])


def default_instance_type(compute: Doc) -> str:
    return str(compute["properties"]["properties"]["defaultInstanceType"])
