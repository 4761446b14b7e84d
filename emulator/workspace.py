"""The one workspace the emulator serves: its names, its ARM id and its scope check.

The subscription and workspace ids are made on the first start and kept in the state
directory; the resource group, workspace name and location are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.errors import ApiError
from emulator.store import Doc

PROVIDER = "Microsoft.MachineLearningServices"
LOCATION = "local"
RESOURCE_GROUP = "bluegreen-local"
WORKSPACE = "emulator"


@dataclass(frozen=True)
class LocalWorkspace:
    """The emulated workspace, named by the ids of its state directory."""

    subscription_id: str
    workspace_id: str

    @property
    def path(self) -> str:
        """The workspace's ARM id, the prefix of every endpoint's and deployment's."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{RESOURCE_GROUP}"
            f"/providers/{PROVIDER}/workspaces/{WORKSPACE}"
        )

    def check_scope(self, subscription: str, resource_group: str, workspace: str) -> None:
        if subscription.lower() != self.subscription_id.lower():
            raise ApiError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{subscription}' could not be found.",
            )
        if resource_group.lower() != RESOURCE_GROUP:
            raise ApiError(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{resource_group}' could not be found.",
            )
        if workspace.lower() != WORKSPACE:
            raise ApiError(
                404,
                "WorkspaceNotFound",
                f"Workspace '{workspace}' not found in resource group '{resource_group}'.",
            )

    def doc(self) -> Doc:
        return {
            "id": self.path,
            "name": WORKSPACE,
            "type": f"{PROVIDER}/workspaces",
            "location": LOCATION,
            "kind": "Default",
            "tags": {},
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "friendlyName": "bluegreen local emulator",
                "description": "Local emulator of Azure ML managed online endpoints",
                "workspaceId": self.workspace_id,
                "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled",
                "hbiWorkspace": False,
            },
        }
