"""`python -m emulator apply -f FILE`: what `az ml online-endpoint|deployment create -f` does.

The YAML is parsed with azure-ai-ml's own loaders, so the same files work here and
on Azure. Local model and code folders are registered as assets of the emulator
(copied into its state directory, content-addressed so re-applying unchanged files
registers nothing new), then the endpoint or deployment is PUT through the REST API
and its long-running operation followed to the end.

Applying an endpoint that exists carries its live and mirror traffic forward
unless the YAML sets them: a PUT built from a file would otherwise zero the traffic.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import (
    Environment,
    ManagedOnlineDeployment,
    Model,
    OnlineDeployment,
)

from emulator.asset_files import content_digest
from emulator.server import status


class ApplyError(Exception):
    """The file could not be applied; the message says why."""


_AUTH_MODES = {"key": "Key", "aml_token": "AMLToken", "aad_token": "AADToken"}


class Connection(Protocol):
    """What a client needs to reach the emulator: `Status`, or rollout's `EmulatorFacts`."""

    @property
    def arm_url(self) -> str: ...
    @property
    def ca_cert(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def subscription_id(self) -> str: ...
    @property
    def resource_group(self) -> str: ...
    @property
    def workspace_name(self) -> str: ...
    @property
    def location(self) -> str: ...


class _Client:
    def __init__(self, facts: Connection) -> None:
        self.facts = facts
        self.ws = (
            f"/subscriptions/{facts.subscription_id}/resourceGroups/{facts.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{facts.workspace_name}"
        )
        self.http = httpx.Client(
            base_url=facts.arm_url,
            verify=facts.ca_cert,
            headers={"Authorization": f"Bearer {facts.token}"},
            params={"api-version": "2023-04-01"},
            timeout=30.0,
        )

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        response = self.http.request(method, self.ws + path, json=body)
        if response.status_code >= 400 and not (method == "GET" and response.status_code == 404):
            raise ApplyError(_error_message(response))
        return response

    def wait(self, response: httpx.Response, what: str, timeout: float = 600.0) -> None:
        url = response.headers.get("Azure-AsyncOperation")
        if not url:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            poll = self.http.get(url)
            if poll.status_code >= 400:
                raise ApplyError(_error_message(poll))
            body = poll.json()
            if body["status"] == "Succeeded":
                return
            if body["status"] in ("Failed", "Canceled"):
                error = body.get("error") or {}
                raise ApplyError(f"{what} failed: {error.get('message', body['status'])}")
            time.sleep(0.25)
        raise ApplyError(f"{what} did not finish within {timeout:.0f} s")


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return f"{error.get('code', response.status_code)}: {error.get('message', response.text)}"
    except ValueError:
        return f"HTTP {response.status_code}: {response.text}"


def apply_file(
    state_dir: Path, path: Path, *, all_traffic: bool = False, if_missing: bool = False
) -> str:
    """Apply one endpoint or deployment YAML; returns what was done, in words."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ApplyError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ApplyError(f"{path} is not an endpoint or deployment YAML file")
    client = _Client(status(state_dir))
    if "endpoint_name" in data or "model" in data or "code_configuration" in data:
        return _apply_deployment(client, path, all_traffic=all_traffic, if_missing=if_missing)
    if all_traffic:
        raise ApplyError("--all-traffic applies to a deployment file, not an endpoint")
    return _apply_endpoint(client, path, if_missing=if_missing)


def _apply_endpoint(client: _Client, path: Path, *, if_missing: bool) -> str:
    endpoint = load_online_endpoint(str(path))
    existing = client.request("GET", f"/onlineEndpoints/{endpoint.name}")
    if existing.status_code == 200 and if_missing:
        return f"endpoint '{endpoint.name}' already exists; left as it is"
    current = existing.json()["properties"] if existing.status_code == 200 else {}
    traffic = endpoint.traffic if endpoint.traffic else current.get("traffic", {})
    mirror = (
        endpoint.mirror_traffic if endpoint.mirror_traffic else current.get("mirrorTraffic", {})
    )
    body = {
        "location": client.facts.location,
        "identity": {"type": "SystemAssigned"},
        "tags": endpoint.tags or {},
        "properties": {
            "authMode": _AUTH_MODES.get(str(endpoint.auth_mode).lower(), "Key"),
            "description": endpoint.description,
            "traffic": traffic,
            "mirrorTraffic": mirror,
        },
    }
    response = client.request("PUT", f"/onlineEndpoints/{endpoint.name}", body)
    client.wait(response, f"endpoint '{endpoint.name}'")
    verb = "updated" if existing.status_code == 200 else "created"
    return f"endpoint '{endpoint.name}' {verb}"


def _apply_deployment(client: _Client, path: Path, *, all_traffic: bool, if_missing: bool) -> str:
    deployment = load_online_deployment(str(path))
    name, endpoint = deployment.name, deployment.endpoint_name
    if not endpoint or not name:
        raise ApplyError(f"{path}: name and endpoint_name are required")
    if not isinstance(deployment, ManagedOnlineDeployment):
        raise ApplyError(f"{path}: the emulator runs managed online deployments only")
    if client.request("GET", f"/onlineEndpoints/{endpoint}").status_code == 404:
        raise ApplyError(f"endpoint '{endpoint}' does not exist; apply its YAML first")
    existing = client.request("GET", f"/onlineEndpoints/{endpoint}/deployments/{name}")
    if existing.status_code == 200 and if_missing:
        return f"deployment '{name}' of endpoint '{endpoint}' already exists; left as it is"
    _register_assets(client, deployment)
    rest = deployment._to_rest_object(location=client.facts.location)
    response = client.request(
        "PUT", f"/onlineEndpoints/{endpoint}/deployments/{name}", rest.as_dict()
    )
    client.wait(response, f"deployment '{name}' of endpoint '{endpoint}'")
    verb = "updated" if existing.status_code == 200 else "created"
    done = f"deployment '{name}' of endpoint '{endpoint}' {verb}"
    if all_traffic:
        _send_all_traffic(client, endpoint, name)
        done += "; it now takes 100% of live traffic"
    return done


def register_local_assets(state_dir: Path, deployment: OnlineDeployment) -> OnlineDeployment:
    """Register a deployment's local model, code and environment; point it at them.

    What `az ml` does by uploading to the workspace's blob storage, the emulator does
    from local paths: afterwards the deployment refers to assets by ARM id and any
    client, MLClient included, can create it unchanged.
    """
    return register_local_assets_at(status(state_dir), deployment)


def register_local_assets_at(
    connection: Connection, deployment: OnlineDeployment
) -> OnlineDeployment:
    """`register_local_assets` for a client that knows the emulator by its connection facts
    rather than its state directory (the dashboard's Workspace)."""
    client = _Client(connection)
    try:
        _register_assets(client, deployment)
    finally:
        client.http.close()
    return deployment


def _register_assets(client: _Client, deployment: OnlineDeployment) -> None:
    base = Path(deployment.base_path)
    deployment.model = _register_model(client, deployment.model)
    if deployment.code_configuration is not None:
        code = deployment.code_configuration.code
        if isinstance(code, str) and not code.startswith(("azureml:", "/subscriptions/")):
            deployment.code_configuration.code = _register_code(client, (base / code).resolve())
    deployment.environment = _register_environment(client, deployment.environment)


def _register_versioned(
    client: _Client, kind: str, name: str, version: str | None, props: dict[str, Any], digest: str
) -> str:
    """PUT an asset version, reusing an existing version with the same content."""
    props = {**props, "properties": {**props.get("properties", {}), "contentHash": digest}}
    if version is None:
        listing = client.request("GET", f"/{kind}/{name}/versions")
        versions = listing.json().get("value", []) if listing.status_code == 200 else []
        for doc in versions:
            if doc["properties"].get("properties", {}).get("contentHash") == digest:
                return str(doc["id"])
        numbers = [int(d["name"]) for d in versions if str(d["name"]).isdigit()]
        version = str(max(numbers, default=0) + 1)
    response = client.request("PUT", f"/{kind}/{name}/versions/{version}", {"properties": props})
    return str(response.json()["id"])


def _register_model(client: _Client, model: Any) -> Any:
    if not isinstance(model, Model) or model.path is None:
        return model
    source = Path(str(model.path)).resolve()
    digest = content_digest(source)
    name = (
        model.name
        if model.name and len(model.name) <= 64 and not _is_hash(model.name)
        else f"model-{digest[:12]}"
    )
    props = {
        "modelUri": source.as_uri(),
        "modelType": "custom_model",
        "description": model.description,
    }
    return _register_versioned(
        client, "models", name, model.version if model.name == name else None, props, digest
    )


def _register_code(client: _Client, source: Path) -> str:
    digest = content_digest(source)
    return _register_versioned(
        client, "codes", f"code-{digest[:12]}", "1", {"codeUri": source.as_uri()}, digest
    )


def _register_environment(client: _Client, environment: Any) -> Any:
    if not isinstance(environment, Environment):
        return environment
    conda = yaml.safe_dump(environment.conda_file) if environment.conda_file else None
    props = {"image": environment.image, "condaFile": conda, "description": environment.description}
    digest = content_digest_text(f"{environment.image}\n{conda}")
    return _register_versioned(client, "environments", f"env-{digest[:12]}", "1", props, digest)


def _is_hash(name: str) -> bool:
    return len(name) >= 32 and all(c in "0123456789abcdef" for c in name.lower())


def content_digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _send_all_traffic(client: _Client, endpoint: str, deployment: str) -> None:
    """get -> modify -> PUT of the whole endpoint, like `az ml ... create --all-traffic`."""
    current = client.request("GET", f"/onlineEndpoints/{endpoint}").json()
    props = current["properties"]
    props["traffic"] = {d: 0 for d in props.get("traffic", {})} | {deployment: 100}
    props["mirrorTraffic"] = {
        d: p
        for d, p in (props.get("mirrorTraffic") or {}).items()
        if d.lower() != deployment.lower()
    }
    body = {k: current[k] for k in ("location", "identity", "tags", "kind") if k in current}
    body["properties"] = {
        k: props[k]
        for k in ("authMode", "description", "properties", "traffic", "mirrorTraffic")
        if k in props
    }
    response = client.request("PUT", f"/onlineEndpoints/{endpoint}", body)
    client.wait(response, f"traffic update of endpoint '{endpoint}'")
