"""Online deployments: the ARM resource, from a PUT's checks to its delete, logs and SKUs.

`Deployments` answers the deployment routes. A PUT is checked (`rollout.rules`, the
body, the assets it names, a scoring script inside its code) before anything is stored,
then the deployment is stored with the paths of its model and code and provisioned in
the background (runtimes.py). The emulator's own fields start with `_` and never leave.
"""

from __future__ import annotations

import functools
from pathlib import Path

from emulator import bodies
from emulator.assets import Assets
from emulator.bodies import parse_duration_ms
from emulator.computes import default_instance_type, instance_types
from emulator.conda_env import environment_of
from emulator.endpoints import Deleting, Endpoints
from emulator.errors import ApiError, check_rules
from emulator.instance import tail_file
from emulator.logfile import remove_log
from emulator.operations import Interrupted, Operations
from emulator.runtimes import Runtimes, probe_settings
from emulator.store import Doc, Store, utc_now
from emulator.workspace import LOCATION, PROVIDER, WORKSPACE
from rollout import compute_rules, rules
from rollout.errors import Violation

Violations = list[Violation]
_BUSY_STATES = ("Creating", "Updating", "Scaling", "Deleting")


class Deployments:
    """The deployments of every endpoint."""

    def __init__(
        self,
        store: Store,
        operations: Operations,
        endpoints: Endpoints,
        runtimes: Runtimes,
        assets: Assets,
        *,
        workspace_path: str,
    ) -> None:
        self.store = store
        self.operations = operations
        self.endpoints = endpoints
        self.runtimes = runtimes
        self.assets = assets
        self.workspace_path = workspace_path

    def list_all(self, endpoint: str) -> list[Doc]:
        self.endpoints.stored(endpoint)
        return [self.render(d) for d in self.store.list_deployments(endpoint)]

    def stored(self, endpoint: str, name: str) -> Doc:
        """The deployment as stored (with the emulator's own fields); 404 when there is none."""
        self.endpoints.stored(endpoint)
        doc = self.store.get_deployment(endpoint, name)
        if doc is None:
            raise ApiError(
                404,
                "UserError",
                f"Deployment '{name}' not found in endpoint '{endpoint}', workspace '{WORKSPACE}'.",
            )
        return doc

    def get(self, endpoint: str, name: str) -> Doc:
        return self.render(self.stored(endpoint, name))

    def render(self, doc: Doc) -> Doc:
        out = dict(doc)
        out["properties"] = {k: v for k, v in doc["properties"].items() if not k.startswith("_")}
        return out

    def put(self, endpoint: str, name: str, body: Doc) -> tuple[Doc, str, bool]:
        endpoint_doc = self.endpoints.stored(endpoint)
        endpoint = endpoint_doc["name"]
        if endpoint_doc["properties"]["provisioningState"] == "Deleting":
            raise ApiError(409, "Conflict", f"Endpoint '{endpoint}' is being deleted.")
        existing = self.store.get_deployment(endpoint, name)
        if existing is None:
            names = [d["name"] for d in self.store.list_deployments(endpoint)]
            check_rules(rules.check_new_deployment(endpoint, names, name))
        else:
            name = existing["name"]
            if existing["properties"]["provisioningState"] in _BUSY_STATES:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Deployment '{name}' of endpoint '{endpoint}' is "
                    f"{existing['properties']['provisioningState'].lower()}; wait for that "
                    "operation to finish before changing it again.",
                )
        bodies.check_deployment(endpoint, name, body)
        what = f"deployment '{name}' of endpoint '{endpoint}'"
        props = dict(body.get("properties") or {})
        sku = dict(body.get("sku") or {})
        capacity = sku.get("capacity") if sku.get("capacity") is not None else 1
        violations = rules.check_instance_count(endpoint, name, capacity)
        placement, found = self._placement(endpoint_doc, name, props)
        violations += found
        request = {
            "requestTimeout": "PT5S",
            "maxConcurrentRequestsPerInstance": rules.DEFAULT_MAX_CONCURRENT_REQUESTS,
            "maxQueueWait": "PT0.5S",
        }
        # Only absent (null) settings take the defaults: a 0 is refused by the body check,
        # never silently turned into the default.
        request.update(
            {k: v for k, v in (props.get("requestSettings") or {}).items() if v is not None}
        )
        timeout_ms = parse_duration_ms(
            request["requestTimeout"], what=f"requestSettings.requestTimeout of {what}"
        )
        violations += rules.check_request_timeout(endpoint, name, timeout_ms)
        check_rules(violations)
        probes = {
            probe: probe_settings(props.get(probe)) for probe in ("livenessProbe", "readinessProbe")
        }
        model = self.assets.resolve("models", props.get("model"), what=f"model of '{name}'")
        code_config = props.get("codeConfiguration") or {}
        code = self.assets.resolve("codes", code_config.get("codeId"), what=f"code of '{name}'")
        script = code_config.get("scoringScript")
        if model is None or code is None or not script:
            raise ApiError(
                400,
                "BadArgument",
                f"deployment '{name}' of endpoint '{endpoint}' needs a model and a code "
                "configuration with a scoring script: the emulator runs score.py itself "
                "(no-code deployments are not emulated)",
            )
        _check_script(code, str(script), what=what)
        environment = environment_of(self.assets, props.get("environmentId"), what=what)
        now = utc_now()
        system = dict((existing or {}).get("systemData") or {"createdAt": now})
        system.update(createdBy="local-user", createdByType="User")
        system.update(lastModifiedAt=now, lastModifiedBy="local-user", lastModifiedByType="User")
        props.update(
            **placement,
            scaleSettings=props.get("scaleSettings") or {"scaleType": "Default"},
            requestSettings=request,
            livenessProbe=probes["livenessProbe"],
            readinessProbe=probes["readinessProbe"],
            environmentVariables=props.get("environmentVariables") or {},
            properties=props.get("properties") or {},
            appInsightsEnabled=bool(props.get("appInsightsEnabled")),
            egressPublicNetworkAccess=props.get("egressPublicNetworkAccess") or "Enabled",
            endpointName=endpoint,
            _modelDir=model["_local"],
            _codeDir=code["_local"],
            _environment=environment,
        )
        if existing is None:
            state = "Creating"
        elif self._only_capacity_changed(existing, props, capacity):
            state = "Scaling"
        else:
            state = "Updating"
        props["provisioningState"] = state
        doc: Doc = {
            "id": f"{self.workspace_path}/onlineEndpoints/{endpoint}/deployments/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
            "location": body.get("location") or LOCATION,
            "kind": body.get("kind") or placement["endpointComputeType"],
            "tags": body.get("tags") or {},
            "sku": {"name": sku.get("name") or "Default", "capacity": capacity},
            "systemData": system,
            "properties": props,
        }
        if existing is not None:
            doc["properties"]["_previous"] = {
                k: v for k, v in existing["properties"].items() if k != "_previous"
            }
            doc["properties"]["_previousCapacity"] = existing["sku"]["capacity"]
        self.store.put_deployment(endpoint, doc)
        op_id = self.operations.new("deployment", f"{endpoint}/{name}")
        self.operations.spawn(self.runtimes.provision(endpoint, name, op_id))
        return self.render(doc), op_id, existing is None

    def _placement(self, endpoint_doc: Doc, name: str, props: Doc) -> tuple[Doc, Violations]:
        """Where a deployment runs on its endpoint: its `endpointComputeType`, `instanceType`
        (and, on Kubernetes, `containerResourceRequirements`), and the violations.

        A Kubernetes endpoint takes Kubernetes deployments only (and a managed endpoint
        managed ones), with an instance type its compute defines: the compute's default
        when the deployment names none. Its resources are the instance type's, as Azure
        reads them back, unless the deployment sets its own.
        """
        endpoint = endpoint_doc["name"]
        compute_id = endpoint_doc["properties"].get("compute")
        wanted = str(props.get("endpointComputeType") or "Managed")
        found = compute_rules.check_compute_type(
            endpoint, name, endpoint_compute=compute_id, deployment_type=wanted
        )
        if not compute_id:
            managed = str(props.get("instanceType") or "Standard_DS3_v2")
            return {"endpointComputeType": "Managed", "instanceType": managed}, found
        compute = self.endpoints.computes.resolve(compute_id, what=f"endpoint '{endpoint}'")
        instance_type = str(props.get("instanceType") or default_instance_type(compute))
        defined = instance_types(compute)
        if not found:
            found += compute_rules.check_instance_type(
                endpoint, name, instance_type, compute=compute["name"], valid=list(defined)
            )
        chosen = {k.lower(): v for k, v in defined.items()}.get(instance_type.lower(), {})
        resources = chosen.get("resources") or {}
        requirements = props.get("containerResourceRequirements") or {
            "containerResourceRequests": _container_settings(resources.get("requests")),
            "containerResourceLimits": _container_settings(resources.get("limits")),
        }
        return {
            "endpointComputeType": "Kubernetes",
            "instanceType": instance_type,
            "containerResourceRequirements": requirements,
        }, found

    @staticmethod
    def _only_capacity_changed(existing: Doc, props: Doc, capacity: object) -> bool:
        before = existing["properties"]
        fields = (
            "_modelDir",
            "_codeDir",
            "_environment",
            "codeConfiguration",
            "environmentVariables",
        )
        same = all(before.get(f) == props.get(f) for f in fields)
        return same and existing["sku"]["capacity"] != capacity

    def patch(self, endpoint: str, name: str, body: Doc) -> tuple[Doc, str, bool]:
        current = self.stored(endpoint, name)
        bodies.check_deployment(endpoint, name, body)
        merged: Doc = {
            "location": current.get("location"),
            "kind": current.get("kind"),
            "tags": body.get("tags", current.get("tags")),
            "sku": {**current["sku"], **(body.get("sku") or {})},
            "properties": {k: v for k, v in current["properties"].items() if not k.startswith("_")},
        }
        merged["properties"].update(body.get("properties") or {})
        return self.put(endpoint, name, merged)

    def delete(self, endpoint: str, name: str) -> str | None:
        endpoint_doc = self.store.get_endpoint(endpoint)
        if endpoint_doc is None:
            return None
        doc = self.store.get_deployment(endpoint, name)
        if doc is None:
            return None
        props = endpoint_doc["properties"]
        check_rules(
            rules.check_delete_deployment(
                endpoint_doc["name"],
                doc["name"],
                props.get("traffic") or {},
                props.get("mirrorTraffic") or {},
            )
        )
        doc["properties"]["provisioningState"] = "Deleting"
        self.store.put_deployment(endpoint, doc)
        op_id = self.operations.new("deployment-delete", f"{endpoint}/{name}")
        self.operations.spawn(self._finish_delete(endpoint, doc["name"], op_id), [op_id])
        return op_id

    async def _finish_delete(self, endpoint: str, name: str, op_id: str | None) -> None:
        await self.runtimes.drop(endpoint, name)
        self.store.delete_deployment(endpoint, name)
        endpoint_doc = self.store.get_endpoint(endpoint)
        if endpoint_doc is not None:
            # A deployment at 0% may still be listed with 0 in the map; drop it.
            props = endpoint_doc["properties"]
            for field_name in ("traffic", "mirrorTraffic"):
                values = props.get(field_name) or {}
                props[field_name] = {k: v for k, v in values.items() if k.lower() != name.lower()}
            self.store.update_endpoint(endpoint_doc)
            self.endpoints.set_route(endpoint_doc)
        for suffix in (".log", ".storage.log"):
            remove_log(self.runtimes.logs_dir(endpoint) / f"{name.lower()}{suffix}")
        self.operations.finish(op_id)

    def get_logs(self, endpoint: str, name: str, body: Doc) -> Doc:
        self.stored(endpoint, name)
        tail = body.get("tail") or 500
        if not isinstance(tail, int) or isinstance(tail, bool) or tail < 1:
            raise ApiError(400, "BadArgument", f"tail must be a positive integer, got {tail!r}")
        container = str(body.get("containerType") or "InferenceServer")
        suffix = {"inferenceserver": ".log", "storageinitializer": ".storage.log"}.get(
            container.lower()
        )
        if suffix is None:
            raise ApiError(
                400,
                "BadArgument",
                f"containerType must be InferenceServer or StorageInitializer, got {container!r}",
            )
        path = self.runtimes.logs_dir(endpoint) / f"{name.lower()}{suffix}"
        return {"content": tail_file(path, tail)}

    def list_skus(self, endpoint: str, name: str) -> Doc:
        doc = self.stored(endpoint, name)
        return {
            "value": [
                {
                    "resourceType": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
                    "sku": {"name": doc["properties"].get("instanceType"), "tier": "Standard"},
                    "capacity": {
                        "minimum": rules.MIN_INSTANCES,
                        "maximum": rules.MAX_INSTANCES,
                        "default": 1,
                        "scaleType": "Manual",
                    },
                }
            ]
        }

    # restart

    def restore(self, interrupted: Interrupted, deleting: Deleting) -> None:
        """Start every stored deployment again, or finish what a crash interrupted.

        A deployment of an endpoint in `deleting` never starts again: its delete operations
        join the endpoint's.
        """
        for dep in self.store.list_deployments():
            endpoint = dep["properties"]["endpointName"]
            name = dep["name"]
            provisions = interrupted.take("deployment", f"{endpoint}/{name}")
            deletes = interrupted.take("deployment-delete", f"{endpoint}/{name}")
            state = dep["properties"]["provisioningState"]
            if endpoint.lower() in deleting:
                # Deleting the endpoint deletes this deployment too: it never starts again.
                self.operations.end_interrupted(
                    provisions, f"endpoint '{endpoint}' is being deleted"
                )
                deleting[endpoint.lower()][1].extend(deletes)
            elif state == "Deleting":
                self.operations.end_interrupted(provisions, f"deployment '{name}' is being deleted")
                job = functools.partial(self._finish_delete, endpoint, name)
                self.operations.resume(job, deletes)
            elif state != "Failed" or dep["properties"].get("_serving"):
                # A deployment that failed on creation never had instances to bring back.
                self.operations.end_interrupted(
                    deletes, f"deployment '{name}' is not being deleted"
                )
                # The runtime exists before the first request: one that arrives while the
                # instances start waits for them instead of finding no deployment.
                self.runtimes.ensure(endpoint, name, dep)
                job = functools.partial(self.runtimes.provision, endpoint, name, restart=True)
                self.operations.resume(job, provisions)
            else:
                self.operations.end_interrupted(provisions + deletes, f"deployment '{name}' failed")


def _container_settings(resources: dict[str, str | None] | None) -> Doc:
    """Kubernetes requests or limits in the shape of Azure's ContainerResourceSettings."""
    values = resources or {}
    return {
        "cpu": values.get("cpu"),
        "memory": values.get("memory"),
        "gpu": values.get("nvidia.com/gpu"),
    }


def _check_script(code: Doc, script: str, *, what: str) -> None:
    """The scoring script must be a file inside the code asset: no absolute path, no '..'."""
    root = Path(str(code["_local"])).resolve()
    candidate = (root / script).resolve()
    if Path(script).is_absolute() or not candidate.is_relative_to(root):
        raise ApiError(
            400,
            "BadArgument",
            f"codeConfiguration.scoringScript of {what} is {bodies.show(script)}; it must be a "
            f"path inside the code folder ({code.get('id', 'the code asset')}), relative to it",
        )
    if not candidate.is_file():
        raise ApiError(
            400,
            "BadArgument",
            f"codeConfiguration.scoringScript of {what}: {bodies.show(script)} is not a file in "
            f"the code folder ({code.get('id', 'the code asset')})",
        )
