"""The emulator's domain: one object that holds the state directory's workspace and its parts.

`Emulator` reads the settings and ids kept in the state directory (the SQLite store's
meta table), builds the collaborators that each own one concept, and starts and stops
them together:

- `workspace` (workspace.py): the workspace's ids and scope;
- `operations` (operations.py): long-running operations and the background work;
- `endpoints` (endpoints.py): endpoints and the routes the data plane reads;
- `keys` (keys.py): endpoint keys and tokens;
- `deployments` (deployments.py): deployments as ARM resources;
- `runtimes` (runtimes.py): the instance pools of running deployments;
- `assets` (assets.py): model, code and environment versions;
- `datastores` (datastores.py): the default datastore, described but not backed.

The HTTP layers (`arm.py` for the control plane, `scoring.py` for the data plane) only
translate requests into calls on these. Every change is validated with `rollout.rules`
before anything is stored: a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path

from emulator.asset_files import DEFAULT_MAX_ASSET_MB, AssetFiles
from emulator.assets import Assets
from emulator.auth import arm_token
from emulator.datastores import Datastores
from emulator.deployments import Deployments
from emulator.endpoints import EndpointRoute, Endpoints
from emulator.env_builds import EnvironmentBuilds
from emulator.instance import InstanceLimits
from emulator.keys import Keys
from emulator.lifecycle import ConsoleLines, EventLog
from emulator.mirror_sample import DEFAULT_CAPACITY, MirrorSample
from emulator.monitor_sampler import Sampler
from emulator.operations import Interrupted, Operations
from emulator.requestlog import RequestLog
from emulator.runtimes import DeploymentRuntime, Runtimes
from emulator.store import Store, utc_now
from emulator.workspace import LOCATION, PROVIDER, RESOURCE_GROUP, WORKSPACE, LocalWorkspace

# Imported from here by code written before the split into modules.
__all__ = [
    "LOCATION",
    "PROVIDER",
    "RESOURCE_GROUP",
    "WORKSPACE",
    "DeploymentRuntime",
    "Emulator",
    "EndpointRoute",
]


class Emulator:
    def __init__(self, state_dir: Path, socket_dir: Path) -> None:
        self.state_dir = state_dir
        self.socket_dir = socket_dir
        self.store = Store(state_dir / "state.db")
        self.workspace = LocalWorkspace(
            subscription_id=self._meta_default("subscription_id", lambda: str(uuid.uuid4())),
            workspace_id=self._meta_default("workspace_id", lambda: str(uuid.uuid4())),
        )
        token_secret = self._meta_default("token_secret", lambda: secrets.token_hex(32))
        self.base_url = ""
        self.operations = Operations(self.store)
        self.background: set[asyncio.Task[None]] = set()
        retention_days = float(self._meta_default("retention_days", lambda: "7"))
        self.requests = RequestLog(state_dir / "requests.db", retention_days=retention_days)
        # Instances' life-cycle events and output, for the Logs query API (logs_api.py).
        self.events = EventLog(state_dir / "events.db", retention_days=retention_days)
        self.console = ConsoleLines()
        # The Log Analytics workspace the emulator's deployments send their logs to.
        self.log_analytics_workspace_id = self._meta_default(
            "log_analytics_workspace_id", lambda: str(uuid.uuid4())
        )
        self.max_body_bytes = int(self._meta_default("max_body_bytes", lambda: str(100 * 2**20)))
        max_asset = float(self._meta_default("max_asset_mb", lambda: str(DEFAULT_MAX_ASSET_MB)))
        self.assets = Assets(
            self.store,
            AssetFiles(state_dir, max_bytes=int(max_asset * 2**20)),
            workspace_path=self.workspace.path,
            workspace=WORKSPACE,
            resource_type=f"{PROVIDER}/workspaces",
        )
        self.datastores = Datastores(
            self.workspace, created_at=self._meta_default("created_at", utc_now)
        )
        self.max_response_bytes = int(
            self._meta_default("max_response_bytes", lambda: str(100 * 2**20))
        )
        defaults = InstanceLimits()
        self.instance_memory_bytes = int(
            self._meta_default("instance_memory_bytes", lambda: str(defaults.memory_bytes))
        )
        self.instance_log_bytes = int(
            self._meta_default("instance_log_bytes", lambda: str(defaults.log_bytes))
        )
        # Added latency of control-plane and metrics answers (emulator/latency.py).
        self.arm_latency_ms = int(self._meta_default("arm_latency_ms", lambda: "0"))
        self.metrics_latency_ms = int(
            self._meta_default("metrics_latency_ms", lambda: str(self.arm_latency_ms))
        )
        # The last mirrored requests with both answers, in memory only (mirror_sample.py).
        self.mirror_sample = MirrorSample(
            int(self._meta_default("mirror_sample", lambda: str(DEFAULT_CAPACITY)))
        )
        # `serve` may change the settings above before `start`: the collaborators read the
        # ones they need when they use them.
        self.runtimes = Runtimes(
            self.store,
            self.operations,
            state_dir=state_dir,
            socket_dir=socket_dir,
            limits=lambda: InstanceLimits(self.instance_memory_bytes, self.instance_log_bytes),
            events=self.events,
            console=self.console,
            builds=EnvironmentBuilds(),
        )
        self.endpoints = Endpoints(
            self.store,
            self.operations,
            self.runtimes,
            workspace_path=self.workspace.path,
            scoring_uri=self.scoring_uri,
            on_deleted=lambda name: self.mirror_sample.clear(name),
        )
        # The ARM token is also the emulator's Microsoft Entra token (keys.py).
        self.keys = Keys(
            self.store, self.endpoints, token_secret=token_secret, entra_token=arm_token(state_dir)
        )
        self.sampler = Sampler(self.runtimes, self.endpoints, self.requests)
        self.deployments = Deployments(
            self.store,
            self.operations,
            self.endpoints,
            self.runtimes,
            self.assets,
            workspace_path=self.workspace.path,
        )

    def _meta_default(self, key: str, make: Callable[[], str]) -> str:
        value = self.store.get_meta(key)
        if value is None:
            value = make()
            self.store.set_meta(key, value)
        return value

    def scoring_uri(self, endpoint: str) -> str:
        return f"{self.base_url}/online/{endpoint}/score"

    async def start(self) -> None:
        """Bring back every endpoint and deployment from the store and finish interrupted work.

        Every operation a crash left InProgress ends: the work it stands for runs again under
        its own id (a deployment's provisioning, a delete), or it ends Failed saying why, so
        no poller waits for an operation nothing is doing.
        """
        self.requests.start()
        self.sampler.start()
        interrupted = Interrupted(self.store.list_operations("InProgress"))
        deleting = self.endpoints.restore(interrupted)
        self.deployments.restore(interrupted, deleting)
        self.endpoints.resume_deletes(deleting)
        self.operations.end_orphans(interrupted)

    async def stop(self) -> None:
        await self.operations.stop()
        await self.runtimes.stop()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.sampler.stop()
        await self.requests.stop()
        self.events.close()
        self.store.close()
