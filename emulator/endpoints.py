"""Online endpoints: the ARM resource, and the route the data plane reads of each.

`Endpoints` answers the endpoint routes (list, get, put, patch, delete) and keeps one
`EndpointRoute` per endpoint in memory: its auth mode, keys and traffic, set when a
change has taken effect. Traffic is checked with `rollout.rules` before anything is
stored. A PUT is a full replace, as azure-ai-ml sends the whole endpoint.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator import bodies
from emulator.computes import Computes
from emulator.errors import ApiError, check_rules
from emulator.operations import Interrupted, Operations
from emulator.routing import MirrorGate, SmoothWeighted
from emulator.runtimes import Runtimes
from emulator.store import Doc, Store, utc_now
from emulator.workspace import LOCATION, PROVIDER, WORKSPACE
from rollout import rules

_OP_DELAY_S = 0.3

# Endpoints being deleted when the emulator stopped, by lower-cased name: the name and the
# delete operations to resume (deployment deletes of the endpoint join them).
Deleting = dict[str, tuple[str, list[str]]]


@dataclass
class EndpointRoute:
    """What the data plane needs of one endpoint, kept in memory."""

    name: str
    auth_mode: str
    traffic: dict[str, int]
    mirror: dict[str, int]
    keys: tuple[str, str] = ("", "")
    live: SmoothWeighted = field(init=False)
    mirror_gate: MirrorGate = field(init=False)

    def __post_init__(self) -> None:
        self.live = SmoothWeighted(self.traffic)
        target = next(((d, p) for d, p in self.mirror.items() if p > 0), None)
        self.mirror_gate = MirrorGate(*(target or (None, 0)))


class Endpoints:
    """The workspace's online endpoints and their routes."""

    def __init__(
        self,
        store: Store,
        operations: Operations,
        runtimes: Runtimes,
        *,
        workspace_path: str,
        scoring_uri: Callable[[str], str],
        on_deleted: Callable[[str], None],
    ) -> None:
        self.store = store
        self.operations = operations
        self.runtimes = runtimes
        self.workspace_path = workspace_path
        # Both are called late: `serve` sets the base URL and the mirror sample after the
        # emulator is built.
        self._scoring_uri = scoring_uri
        self._on_deleted = on_deleted
        self.routes: dict[str, EndpointRoute] = {}
        self.computes = Computes(workspace_path)

    def list_all(self) -> list[Doc]:
        return [self.render(d) for d in self.store.list_endpoints()]

    def stored(self, name: str) -> Doc:
        """The endpoint as stored (with the emulator's own fields); 404 when there is none."""
        doc = self.store.get_endpoint(name)
        if doc is None:
            raise ApiError(
                404,
                "UserError",
                f"Endpoint '{name}' not found in workspace '{WORKSPACE}'.",
            )
        return doc

    def get(self, name: str) -> Doc:
        return self.render(self.stored(name))

    def render(self, doc: Doc) -> Doc:
        out = dict(doc)
        props = dict(doc["properties"])
        props["scoringUri"] = self._scoring_uri(doc["name"])
        # As Azure's: next to the scoring URI, answered by a deployment's server.
        props["swaggerUri"] = props["scoringUri"].rsplit("/", 1)[0] + "/swagger.json"
        props["keys"] = None
        out["properties"] = props
        return out

    def put(self, name: str, body: Doc) -> tuple[Doc, str, bool]:
        """Create or replace an endpoint; returns (resource, operation id, created)."""
        check_rules(rules.check_name("endpoint", name))
        bodies.check_endpoint(name, body)
        props = body.get("properties") or {}
        existing = self.store.get_endpoint(name)
        auth_mode = str(props.get("authMode") or "Key")
        if auth_mode.lower() not in ("key", "amltoken", "aadtoken"):
            raise ApiError(
                400,
                "BadArgument",
                f"authMode '{auth_mode}' of endpoint '{name}' must be Key, AMLToken or AADToken",
            )
        compute = self._compute(name, props.get("compute"), existing)
        deployments = [d["name"] for d in self.store.list_deployments(name)] if existing else []
        traffic = props.get("traffic") or {}
        mirror = props.get("mirrorTraffic") or {}
        if not isinstance(traffic, dict) or not isinstance(mirror, dict):
            raise ApiError(400, "BadArgument", f"traffic of endpoint '{name}' must be an object")
        check_rules(
            rules.check_traffic(name, deployments, traffic, mirror, kubernetes=bool(compute))
        )
        now = utc_now()
        if existing is not None:
            if existing["properties"]["provisioningState"] == "Deleting":
                raise ApiError(409, "Conflict", f"Endpoint '{name}' is being deleted.")
            name = existing["name"]
            system = dict(existing.get("systemData") or {})
            system.update(lastModifiedAt=now, lastModifiedBy="local-user")
            identity = existing.get("identity")
        else:
            system = {
                "createdAt": now,
                "createdBy": "local-user",
                "createdByType": "User",
                "lastModifiedAt": now,
                "lastModifiedBy": "local-user",
                "lastModifiedByType": "User",
            }
            identity = {
                "type": "SystemAssigned",
                "principalId": str(uuid.uuid4()),
                "tenantId": str(uuid.UUID(int=0)),
            }
        canonical = {d.lower(): d for d in deployments}
        doc: Doc = {
            "id": f"{self.workspace_path}/onlineEndpoints/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints",
            "location": body.get("location") or LOCATION,
            "kind": body.get("kind") or "Managed",
            "tags": body.get("tags") or {},
            "identity": identity,
            "systemData": system,
            "properties": {
                "authMode": {"key": "Key", "amltoken": "AMLToken", "aadtoken": "AADToken"}[
                    auth_mode.lower()
                ],
                "description": props.get("description"),
                "properties": props.get("properties") or {},
                "traffic": {canonical.get(k.lower(), k): int(v) for k, v in traffic.items()},
                "mirrorTraffic": {
                    canonical.get(k.lower(), k): int(v) for k, v in mirror.items() if int(v) > 0
                },
                "publicNetworkAccess": props.get("publicNetworkAccess") or "Enabled",
                # Only Kubernetes endpoints have a compute; managed ones never show the key.
                **({"compute": compute} if compute else {}),
                "provisioningState": "Updating" if existing else "Creating",
            },
        }
        op_id = self.operations.new("endpoint", name)
        if existing is None:
            self.store.insert_endpoint(doc, secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        else:
            self.store.update_endpoint(doc)
        self.operations.spawn(self._finish_put(name, op_id), [op_id])
        return self.render(doc), op_id, existing is None

    def _compute(self, name: str, reference: object, existing: Doc | None) -> str | None:
        """The ARM id of the Kubernetes compute the endpoint runs on; None for managed.

        Refused when the compute is not in the workspace, and when an endpoint would move
        between managed and Kubernetes (Azure fixes the compute when it creates one).
        """
        compute = None
        if reference:
            compute = self.computes.resolve(str(reference), what=f"endpoint '{name}'")["id"]
        before = existing["properties"].get("compute") if existing is not None else None
        if existing is not None and (before or "").lower() != (compute or "").lower():
            raise ApiError(
                400,
                "BadArgument",
                f"endpoint '{name}' runs on {before or 'managed compute'}; its compute cannot "
                f"change to {compute or 'managed compute'}: create a new endpoint instead",
            )
        return compute

    def patch(self, name: str, body: Doc) -> tuple[Doc, str, bool]:
        """Update some fields of an endpoint: the rest is kept, as ARM PATCH does."""
        current = self.stored(name)
        bodies.check_endpoint(name, body)
        merged: Doc = {
            "location": current.get("location"),
            "kind": current.get("kind"),
            "tags": body.get("tags", current.get("tags")),
            "properties": dict(current["properties"]),
        }
        merged["properties"].update(body.get("properties") or {})
        return self.put(name, merged)

    async def _finish_put(self, name: str, op_id: str) -> None:
        await asyncio.sleep(_OP_DELAY_S)
        doc = self.store.get_endpoint(name)
        if doc is None:
            self.operations.finish(op_id, f"endpoint '{name}' was deleted")
            return
        if doc["properties"]["provisioningState"] == "Deleting":
            # A delete came in meanwhile; marking the endpoint Succeeded would hide it.
            self.operations.finish(op_id)
            return
        doc["properties"]["provisioningState"] = "Succeeded"
        self.store.update_endpoint(doc)
        self.set_route(doc)
        self.operations.finish(op_id)

    def set_route(self, doc: Doc) -> None:
        """Serve the endpoint as stored: its auth mode, keys and traffic."""
        props = doc["properties"]
        self.routes[doc["name"].lower()] = EndpointRoute(
            name=doc["name"],
            auth_mode=props["authMode"],
            traffic={k: int(v) for k, v in (props.get("traffic") or {}).items()},
            mirror={k: int(v) for k, v in (props.get("mirrorTraffic") or {}).items()},
            keys=self.store.get_keys(doc["name"]) or ("", ""),
        )

    def delete(self, name: str) -> str | None:
        """Start deleting an endpoint and its deployments; None when it is already gone."""
        doc = self.store.get_endpoint(name)
        if doc is None:
            return None
        doc["properties"]["provisioningState"] = "Deleting"
        self.store.update_endpoint(doc)
        op_id = self.operations.new("endpoint-delete", name)
        self.operations.spawn(self._finish_delete(doc["name"], op_id), [op_id])
        return op_id

    async def _finish_delete(self, name: str, op_id: str | None) -> None:
        self.routes.pop(name.lower(), None)
        self._on_deleted(name)
        for dep in self.store.list_deployments(name):
            await self.runtimes.drop(name, dep["name"])
        await asyncio.sleep(_OP_DELAY_S)
        self.store.delete_endpoint(name)
        shutil.rmtree(self.runtimes.logs_dir(name), ignore_errors=True)
        self.operations.finish(op_id)

    # restart

    def restore(self, interrupted: Interrupted) -> Deleting:
        """Serve every stored endpoint again; returns those that were being deleted."""
        deleting: Deleting = {}
        for doc in self.store.list_endpoints():
            name = doc["name"]
            props = doc["properties"]
            puts = interrupted.take("endpoint", name)
            if props["provisioningState"] == "Deleting":
                self.operations.end_interrupted(puts, f"endpoint '{name}' is being deleted")
                deleting[name.lower()] = (name, interrupted.take("endpoint-delete", name))
                continue
            if props["provisioningState"] in ("Creating", "Updating"):
                props["provisioningState"] = "Succeeded"
                self.store.update_endpoint(doc)
            self.set_route(doc)
            # An endpoint PUT is stored whole before its operation starts: it took effect.
            for op_id in puts:
                self.operations.finish(op_id)
        return deleting

    def resume_deletes(self, deleting: Deleting) -> None:
        for name, ops in deleting.values():
            self.operations.resume(functools.partial(self._finish_delete, name), ops)
