"""Deployments as they run: one instance pool per deployment, provisioned to its stored spec.

`Runtimes` holds what the data plane needs of each deployment (its request settings and
its `DeploymentPool`), keyed by endpoint and deployment name, and brings a pool to the
spec the store holds (`provision`). A provisioning that fails ends its operation Failed
with the reason in the deployment's log, and an update that failed puts the previous
spec back: the old instances keep serving, as on Azure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emulator.bodies import parse_duration_ms
from emulator.conda_env import EnvironmentSpec
from emulator.env_builds import BuildFailed, EnvironmentBuilds
from emulator.instance import InitFailed, InstanceLimits, InstanceSpec, Probe
from emulator.instances import DeploymentPool
from emulator.lifecycle import ConsoleLines, EventLog
from emulator.operations import Operations
from emulator.store import Doc, Store

log = logging.getLogger(__name__)

DEFAULT_PROBE = {
    "initialDelay": "PT10S",
    "period": "PT10S",
    "timeout": "PT2S",
    "successThreshold": 1,
    "failureThreshold": 30,
}


@dataclass
class DeploymentRuntime:
    """A deployment's serving settings and instance pool."""

    name: str
    request_timeout_ms: int
    max_concurrency: int
    pool: DeploymentPool


class Runtimes:
    """The running deployments of every endpoint, and their logs."""

    def __init__(
        self,
        store: Store,
        operations: Operations,
        *,
        state_dir: Path,
        socket_dir: Path,
        limits: Callable[[], InstanceLimits],
        events: EventLog,
        console: ConsoleLines,
        builds: EnvironmentBuilds,
    ) -> None:
        self.store = store
        self.operations = operations
        self.state_dir = state_dir
        self.socket_dir = socket_dir
        # Read when a pool is made: `serve` sets the limits after the emulator is built.
        self._limits = limits
        self.events = events
        self.console = console
        self.builds = builds
        self._runtimes: dict[tuple[str, str], DeploymentRuntime] = {}

    def get(self, endpoint: str, name: str) -> DeploymentRuntime | None:
        return self._runtimes.get(_key(endpoint, name))

    def values(self) -> list[DeploymentRuntime]:
        return list(self._runtimes.values())

    def logs_dir(self, endpoint: str) -> Path:
        return self.state_dir / "logs" / endpoint.lower()

    def ensure(self, endpoint: str, name: str, doc: Doc) -> DeploymentRuntime:
        """The deployment's runtime, created (with no instances yet) when it has none."""
        key = _key(endpoint, name)
        runtime = self._runtimes.get(key)
        if runtime is None:
            pool = DeploymentPool(
                instance_spec(doc),
                socket_dir=self.socket_dir,
                log_path=self.logs_dir(endpoint) / f"{name.lower()}.log",
                limits=self._limits(),
                on_event=lambda instance, event, message: self.events.record(
                    endpoint, name, instance, event, message
                ),
                on_output=lambda instance, lines: self.console.add(endpoint, name, instance, lines),
            )
            # Requests that come while the first instances start are admitted (429) and
            # timed out (408) as the deployment's settings say.
            pool.desired = int(doc["sku"]["capacity"])
            settings = doc["properties"]["requestSettings"]
            runtime = DeploymentRuntime(
                name,
                parse_duration_ms(settings["requestTimeout"], what="requestTimeout"),
                int(settings["maxConcurrentRequestsPerInstance"]),
                pool,
            )
            self._runtimes[key] = runtime
        return runtime

    async def drop(self, endpoint: str, name: str) -> None:
        """Stop the deployment's instances and forget its runtime, if it has one."""
        runtime = self._runtimes.pop(_key(endpoint, name), None)
        if runtime is not None:
            await runtime.pool.stop()
        self.console.forget(endpoint, name)

    async def stop(self) -> None:
        await asyncio.gather(*(d.pool.stop() for d in self._runtimes.values()))
        self._runtimes.clear()

    async def provision(
        self, endpoint: str, name: str, op_id: str | None, *, restart: bool = False
    ) -> None:
        """Converge the deployment's instances on its stored spec, then record the outcome.

        Whatever fails once the request was accepted ends the operation Failed with the
        reason (in the operation and the deployment's log), and the previous instances
        keep serving: nothing leaves a deployment Updating for ever.
        """
        try:
            await self._converge(endpoint, name, op_id, restart=restart)
        except BuildFailed as exc:
            error = (
                f"Deployment '{name}' of endpoint '{endpoint}' failed: its environment could not "
                f"be built (see the storage-initializer logs). {exc}"
            )
            self._record_failure(endpoint, name, op_id, error)
        except InitFailed as exc:
            error = (
                f"Deployment '{name}' of endpoint '{endpoint}' failed: an instance did not start "
                f"(its init() failed or it exited). See the deployment logs. {exc}"
            )
            self._record_failure(endpoint, name, op_id, error)
        except Exception as exc:  # the operation must end, whatever broke
            log.exception("provisioning deployment %s/%s failed", endpoint, name)
            error = (
                f"Deployment '{name}' of endpoint '{endpoint}' failed while it was provisioned: "
                f"{type(exc).__name__}: {exc}"
            )
            self._record_failure(endpoint, name, op_id, error)

    async def _converge(
        self, endpoint: str, name: str, op_id: str | None, *, restart: bool
    ) -> None:
        doc = self.store.get_deployment(endpoint, name)
        if doc is None:
            self.operations.finish(op_id, f"deployment '{name}' of '{endpoint}' was deleted")
            return
        spec = instance_spec(doc)
        count = int(doc["sku"]["capacity"])
        runtime = self.ensure(endpoint, name, doc)
        runtime.pool.liveness = _probe(doc["properties"].get("livenessProbe"))
        runtime.pool.readiness = _probe(doc["properties"].get("readinessProbe"))
        storage_log = self.logs_dir(endpoint) / f"{name.lower()}.storage.log"
        _storage_log(storage_log, doc)
        spec = await self._environment(spec, doc, storage_log)
        verb = "Restarting" if restart else doc["properties"]["provisioningState"]
        runtime.pool.write_log(f"{verb} deployment '{name}': {count} instance(s) of {spec.script}")
        await runtime.pool.converge(spec, count)
        doc = self.store.get_deployment(endpoint, name)
        if doc is None:
            self.operations.finish(op_id, f"deployment '{name}' of '{endpoint}' was deleted")
            return
        props = doc["properties"]
        runtime.request_timeout_ms = parse_duration_ms(
            props["requestSettings"]["requestTimeout"], what="requestTimeout"
        )
        runtime.max_concurrency = int(props["requestSettings"]["maxConcurrentRequestsPerInstance"])
        props["_serving"] = True
        if not (restart and props["provisioningState"] == "Failed"):
            props["provisioningState"] = "Succeeded"
        props.pop("_previous", None)
        props.pop("_previousCapacity", None)
        self.store.put_deployment(endpoint, doc)
        self.operations.finish(op_id)

    async def _environment(self, spec: InstanceSpec, doc: Doc, storage_log: Path) -> InstanceSpec:
        """The spec with the interpreter of the deployment's environment, built if need be."""
        wanted = doc["properties"].get("_environment")

        def log_line(line: str) -> None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(storage_log, "a", encoding="utf-8") as f:
                f.write(f"{stamp} image-build INFO {line}\n")

        if not wanted:
            log_line(
                f"environment {doc['properties'].get('environmentId')}: no conda file the "
                "emulator can build; the instances run in the emulator's own Python environment"
            )
            return spec
        environment = EnvironmentSpec(
            tuple(wanted["requirements"]), tuple(wanted.get("skipped") or ())
        )
        log_line(f"environment {wanted['id']}")
        python = await self.builds.python_for(environment, log_line)
        return dataclasses.replace(spec, python=str(python))

    def _record_failure(self, endpoint: str, name: str, op_id: str | None, error: str) -> None:
        """End a failed provisioning: the reason logged, the previous spec kept, the op Failed."""
        log_path = self.logs_dir(endpoint) / f"{name.lower()}.log"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(f"{stamp} emulator ERROR {error}\n")
        except OSError:
            # The log may be what failed; the operation still ends with the reason.
            log.warning("cannot write the log of %s/%s: %s", endpoint, name, error)
        doc = self.store.get_deployment(endpoint, name)
        if doc is not None:
            props = doc["properties"]
            if props.get("_previous"):
                # An update that failed leaves the old instances serving; Azure keeps the
                # old spec too and reports the failure on the deployment.
                previous = props.pop("_previous")
                doc["sku"]["capacity"] = props.pop("_previousCapacity", doc["sku"]["capacity"])
                previous["provisioningState"] = "Failed"
                doc["properties"] = previous
            else:
                props["provisioningState"] = "Failed"
            self.store.put_deployment(endpoint, doc)
        self.operations.finish(op_id, error)


def instance_spec(doc: Doc) -> InstanceSpec:
    """What every instance of a stored deployment runs."""
    props = doc["properties"]
    env = props.get("environmentVariables") or {}
    return InstanceSpec(
        endpoint=props["endpointName"],
        deployment=doc["name"],
        code_dir=props["_codeDir"],
        script=props["codeConfiguration"]["scoringScript"],
        model_dir=props["_modelDir"],
        env=tuple(sorted((str(k), str(v)) for k, v in env.items())),
        max_concurrency=int(props["requestSettings"]["maxConcurrentRequestsPerInstance"]),
    )


def probe_settings(settings: object) -> Doc:
    """A probe's (checked) settings with the defaults for the fields not given (null)."""
    given = (
        {k: v for k, v in settings.items() if v is not None} if isinstance(settings, dict) else {}
    )
    return {**DEFAULT_PROBE, **given}


def _key(endpoint: str, deployment: str) -> tuple[str, str]:
    return endpoint.lower(), deployment.lower()


def _probe(settings: object) -> Probe:
    """Probe settings of a deployment (ISO-8601 durations) in seconds."""
    values = probe_settings(settings)
    return Probe(
        initial_delay=parse_duration_ms(values["initialDelay"], what="initialDelay") / 1000,
        period=parse_duration_ms(values["period"], what="period") / 1000,
        timeout=parse_duration_ms(values["timeout"], what="timeout") / 1000,
        success_threshold=int(values["successThreshold"]),
        failure_threshold=int(values["failureThreshold"]),
    )


def _storage_log(path: Path, doc: Doc) -> None:
    """The storage initializer's log: where the model and code were mounted from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    props = doc["properties"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{stamp} storage-initializer INFO model {props.get('model')}\n")
        f.write(f"{stamp} storage-initializer INFO   mounted at {props['_modelDir']}\n")
        f.write(
            f"{stamp} storage-initializer INFO code {props['codeConfiguration'].get('codeId')}\n"
        )
        f.write(f"{stamp} storage-initializer INFO   mounted at {props['_codeDir']}\n")
