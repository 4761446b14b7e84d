"""Connecting to a workspace: the local emulator (the default) or Azure ML.

This is the one module that knows the emulator exists. It asks the emulator for its
connection facts (`python -m emulator status --json`, starting it when needed) and
builds the same SDK clients a real workspace gets, pointed at the emulator's URL and
trusting its local CA. Everything else in rollout/ sees only a `Workspace`.

One difference is not the clients': a deployment may name local model and code folders.
On Azure `MLClient.online_deployments.begin_create_or_update` uploads them to the
workspace's storage itself; the emulator has no storage to upload to (issue 12), so its
Workspace registers them first (`emulator.apply.register_local_assets_at`, the same as
`python -m emulator apply`). `Workspace.prepare_assets` is that step: as-is on Azure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from azure.ai.ml import MLClient
from azure.ai.ml.entities import OnlineDeployment
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential

from rollout import principal
from rollout.calls import CallLog, http_session
from rollout.conditions import IfMatchPolicy
from rollout.errors import ServiceError

_REPO = Path(__file__).resolve().parent.parent
# Connections kept open per host: as many as reads run at once (endpoints.READ_WORKERS).
_POOL_SIZE = 32
_FAR_FUTURE = 4_102_444_800  # 2100-01-01: the emulator's token does not expire


class StaticTokenCredential:
    """A TokenCredential that always presents one bearer token (the emulator's ARM token)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, _FAR_FUTURE)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, _FAR_FUTURE)


@dataclass(frozen=True)
class EmulatorFacts:
    """What `python -m emulator status --json` prints."""

    arm_url: str
    metrics_url: str
    ca_cert: str
    token: str
    subscription_id: str
    resource_group: str
    workspace_name: str
    location: str
    pid: int
    # The emulator's Log Analytics query API and workspace (emulator/logs_api.py).
    logs_url: str = ""
    log_analytics_workspace_id: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmulatorFacts:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


PrepareAssets = Callable[[OnlineDeployment], OnlineDeployment]


def _as_is(deployment: OnlineDeployment) -> OnlineDeployment:
    """Azure: the SDK uploads a deployment's local folders as it creates the deployment."""
    return deployment


def _register_on_emulator(facts: EmulatorFacts) -> PrepareAssets:
    def prepare(deployment: OnlineDeployment) -> OnlineDeployment:
        # Imported here: the dashboard needs the emulator's code only to deploy local folders
        # to it (emulator/ imports rollout.rules, never this module, so there is no cycle).
        import httpx

        from emulator.apply import ApplyError, register_local_assets_at

        try:
            return register_local_assets_at(facts, deployment)
        except (ApplyError, OSError, httpx.HTTPError) as exc:
            raise ServiceError(
                f"registering the local model and code of '{deployment.name}' with the "
                f"emulator failed: {exc}"
            ) from exc

    return prepare


@dataclass
class Workspace:
    """A connected workspace: its ids and the SDK clients that talk to it."""

    kind: Literal["emulator", "azure"]
    subscription_id: str
    resource_group: str
    workspace_name: str
    ml_client: MLClient
    credential: TokenCredential
    verify: str | bool = True
    metrics_url: str | None = None
    location: str | None = None
    # Where the endpoints' diagnostic logs go (Log Analytics), when they are sent there:
    # the workspace id (a GUID), and the query API's URL (None: Azure's public one).
    log_analytics_workspace_id: str | None = None
    logs_url: str | None = None
    facts: EmulatorFacts | None = field(default=None, repr=False)
    # The requests its MLClient (ARM) and its MetricsClient send (calls.py).
    arm_calls: CallLog = field(default_factory=CallLog, repr=False)
    metrics_calls: CallLog = field(default_factory=CallLog, repr=False)
    # Makes a deployment's local model, code and environment something this workspace can
    # create it from (see the module's docstring); returns the deployment to send.
    prepare_assets: PrepareAssets = field(default=_as_is, repr=False)

    _who: str | None = field(default=None, init=False, repr=False)

    def who(self) -> str:
        """Who changes made through this workspace are made by, for the audit log."""
        if self._who is None:
            self._who = principal.who(self.kind, self.credential)
        return self._who

    @property
    def label(self) -> str:
        where = "local emulator" if self.kind == "emulator" else "Azure"
        return f"{self.workspace_name} ({where})"

    @property
    def key(self) -> str:
        """Identifies the workspace in the audit log and in caches."""
        return f"{self.subscription_id}/{self.resource_group}/{self.workspace_name}"

    def resource_path(self, endpoint: str, deployment: str | None = None) -> str:
        """The ARM path of an online endpoint, or of one of its deployments."""
        path = (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
            f"/onlineEndpoints/{endpoint}"
        )
        return path if deployment is None else f"{path}/deployments/{deployment}"


def _emulator_command(
    *args: str, state_dir: Path | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "emulator", *args]
    if state_dir is not None:
        command += ["--state-dir", str(state_dir)]
    return subprocess.run(
        command, cwd=_REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def emulator_facts(
    state_dir: Path | None = None, *, start: bool = True, timeout: float = 90.0
) -> EmulatorFacts:
    """The running emulator's connection facts, starting it first when `start` is true."""
    result = _emulator_command("status", "--json", state_dir=state_dir, timeout=timeout)
    if result.returncode != 0 and start:
        started = _emulator_command("start", state_dir=state_dir, timeout=timeout)
        if started.returncode != 0:
            raise ServiceError(
                "the local emulator did not start: "
                + (started.stderr.strip() or started.stdout.strip())
            )
        result = _emulator_command("status", "--json", state_dir=state_dir, timeout=timeout)
    if result.returncode != 0:
        raise ServiceError(
            "the local emulator is not running; start it with `python -m emulator start`"
        )
    return EmulatorFacts.from_json(json.loads(result.stdout))


def connect_emulator(
    state_dir: Path | None = None,
    *,
    start: bool = True,
    facts: EmulatorFacts | None = None,
    per_call_policies: Sequence[Any] = (),
) -> Workspace:
    """A Workspace on the local emulator, through the unchanged azure-ai-ml MLClient.

    `per_call_policies` are more azure-core policies for the client's pipelines, after the
    If-Match policy every Workspace has.
    """
    facts = facts or emulator_facts(state_dir, start=start)
    credential = StaticTokenCredential(facts.token)
    url = facts.arm_url.rstrip("/")
    # The SDK registers clouds by name, once per process: one name per URL keeps a
    # restarted emulator on a new port from reusing a stale registration.
    cloud = "BluegreenEmulator" + url.rsplit(":", 1)[-1]
    calls = CallLog()
    client = MLClient(
        credential,
        facts.subscription_id,
        facts.resource_group,
        facts.workspace_name,
        cloud=cloud,
        cloud_metadata={
            "azure_portal": url + "/",
            "resource_manager": url + "/",
            "active_directory": url + "/",
            "aml_resource_id": url + "/",
            # The SDK uploads to https://{account}.blob.{storage_endpoint}. The emulator has
            # no storage: the reserved .invalid domain (RFC 2606) never resolves, so an
            # upload fails at once and no file or token goes anywhere (with .localhost a
            # resolver may answer 127.0.0.1:443, whoever listens there).
            "storage_endpoint": "invalid",
            "registry_discovery_endpoint": url + "/",
        },
        connection_verify=facts.ca_cert,
        enable_telemetry=False,
        show_progress=False,
        # MLClient hands its keyword arguments to every REST client's azure-core pipeline.
        per_call_policies=[IfMatchPolicy(), *per_call_policies],
        per_retry_policies=[calls],
        session=http_session(_POOL_SIZE),
        session_owner=False,
    )
    return Workspace(
        kind="emulator",
        subscription_id=facts.subscription_id,
        resource_group=facts.resource_group,
        workspace_name=facts.workspace_name,
        ml_client=client,
        credential=credential,
        verify=facts.ca_cert,
        metrics_url=facts.metrics_url,
        location=facts.location,
        log_analytics_workspace_id=facts.log_analytics_workspace_id or None,
        logs_url=facts.logs_url or None,
        facts=facts,
        arm_calls=calls,
        prepare_assets=_register_on_emulator(facts),
    )


def connect_azure(
    subscription_id: str,
    resource_group: str,
    workspace_name: str,
    *,
    credential: TokenCredential | None = None,
    log_analytics_workspace_id: str | None = None,
) -> Workspace:
    """A Workspace on Azure ML, with DefaultAzureCredential unless a credential is given.

    `log_analytics_workspace_id` is the Log Analytics workspace the endpoints' diagnostic
    settings send their logs to, if they do (the Deployments page's events and requests).
    """
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    calls = CallLog()
    client = MLClient(
        credential,
        subscription_id,
        resource_group,
        workspace_name,
        # Explicit: MLClient otherwise takes the cloud from AZUREML_CURRENT_CLOUD, which
        # an emulator connection in this process has set to the emulator's cloud.
        cloud=os.environ.get("BLUEGREEN_AZURE_CLOUD", "AzureCloud"),
        enable_telemetry=os.environ.get("BLUEGREEN_AZURE_TELEMETRY") == "1",
        show_progress=False,
        per_call_policies=[IfMatchPolicy()],
        per_retry_policies=[calls],
        session=http_session(_POOL_SIZE),
        session_owner=False,
    )
    return Workspace(
        kind="azure",
        subscription_id=subscription_id,
        resource_group=resource_group,
        workspace_name=workspace_name,
        ml_client=client,
        credential=credential,
        arm_calls=calls,
        log_analytics_workspace_id=log_analytics_workspace_id or None,
    )


@dataclass(frozen=True)
class AzureSettings:
    subscription_id: str
    resource_group: str
    workspace_name: str
    source: str
    log_analytics_workspace_id: str = ""


def find_config(start: Path | None = None) -> AzureSettings | None:
    """An Azure ML `config.json`, looked for as `MLClient.from_config` does.

    In the directory and each parent: `config.json`, then `.azureml/config.json`.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for candidate in (directory / "config.json", directory / ".azureml" / "config.json"):
            if not candidate.is_file():
                continue
            try:
                data = json.loads(candidate.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict):
                continue
            sub = data.get("subscription_id") or data.get("Scope", "").split("/")[2:3]
            rg, ws = data.get("resource_group"), data.get("workspace_name")
            if isinstance(sub, str) and sub and rg and ws:
                return AzureSettings(sub, str(rg), str(ws), str(candidate))
    return None
