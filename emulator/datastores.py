"""The workspace's datastores: its default blob datastore, described but not backed.

Every Azure ML workspace has `workspaceblobstore`, its default datastore, a container in
the workspace's storage account; azure-ai-ml reads it (`datastores.get_default()`, which
lists with `isDefault=true`) before it uploads a local model or code folder. The emulator
answers it in Azure's shape so those reads work, but it has no storage account: the
datastore names an account on the reserved `.invalid` domain (RFC 2606), so an upload
through it fails at the name lookup, and no file or token leaves the machine. Register
local files with `python -m emulator apply -f` (or the dashboard) instead; see the README.
"""

from __future__ import annotations

from emulator.errors import ApiError
from emulator.store import Doc
from emulator.workspace import PROVIDER, RESOURCE_GROUP, LocalWorkspace

DEFAULT_DATASTORE = "workspaceblobstore"
# azure-ai-ml builds the blob URL as https://{accountName}.blob.{endpoint}: with this
# endpoint it is https://bluegreenemulator.blob.invalid, a host that never resolves.
STORAGE_ACCOUNT = "bluegreenemulator"
STORAGE_ENDPOINT = "invalid"


class Datastores:
    """The datastores of the emulated workspace: the default one only."""

    def __init__(self, workspace: LocalWorkspace, *, created_at: str) -> None:
        self.workspace = workspace
        self.created_at = created_at

    def list_all(
        self,
        *,
        is_default: bool | None = None,
        names: list[str] | None = None,
        search_text: str | None = None,
    ) -> list[Doc]:
        """The datastores that pass the filters azure-ai-ml's list sends."""
        doc = self._default()
        if is_default is False:
            return []
        if names is not None and DEFAULT_DATASTORE not in {n.lower() for n in names}:
            return []
        if search_text and search_text.lower() not in DEFAULT_DATASTORE:
            return []
        return [doc]

    def get(self, name: str) -> Doc:
        if name.lower() != DEFAULT_DATASTORE:
            raise ApiError(
                404,
                "UserError",
                f"Datastore '{name}' not found in workspace 'emulator'; the emulator has only "
                f"the default datastore '{DEFAULT_DATASTORE}'.",
            )
        return self._default()

    def _default(self) -> Doc:
        container = f"azureml-blobstore-{self.workspace.workspace_id}"
        return {
            "id": f"{self.workspace.path}/datastores/{DEFAULT_DATASTORE}",
            "name": DEFAULT_DATASTORE,
            "type": f"{PROVIDER}/workspaces/datastores",
            "systemData": {
                "createdAt": self.created_at,
                "createdBy": "local-user",
                "createdByType": "User",
                "lastModifiedAt": self.created_at,
                "lastModifiedBy": "local-user",
                "lastModifiedByType": "User",
            },
            "properties": {
                "description": (
                    "The workspace's default datastore. The local emulator has no storage "
                    "account: uploads through this datastore fail; register local files with "
                    "`python -m emulator apply -f`."
                ),
                "tags": {},
                "properties": {},
                "isDefault": True,
                # No secrets to fetch: azure-ai-ml skips listSecrets for these credentials.
                "credentials": {"credentialsType": "None"},
                "datastoreType": "AzureBlob",
                "accountName": STORAGE_ACCOUNT,
                "containerName": container,
                "endpoint": STORAGE_ENDPOINT,
                "protocol": "https",
                "subscriptionId": self.workspace.subscription_id,
                "resourceGroup": RESOURCE_GROUP,
                "serviceDataAccessAuthIdentity": "None",
            },
        }
