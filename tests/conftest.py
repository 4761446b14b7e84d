"""Shared fixtures: a real emulator process over HTTPS, and clients for it.

The session emulator runs `python -m emulator serve` on a free port with a temporary
state directory; tests talk to it with the real azure-ai-ml MLClient and plain httpx.
Tests that restart or kill the emulator use `emulator_factory` for one of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator import server
from rollout.workspace import EmulatorFacts, Workspace, connect_emulator

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@dataclass
class RunningEmulator:
    """One emulator process started by a test fixture."""

    state_dir: Path
    process: subprocess.Popen[bytes] | None = None
    facts: EmulatorFacts | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.state_dir.parent / f"{self.state_dir.name}.log"

    def start(self, timeout: float = 60.0, *, args: tuple[str, ...] = ()) -> EmulatorFacts:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "emulator", "serve", "--state-dir", str(self.state_dir)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*command, *args],
                cwd=REPO,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        try:
            status = server.wait_until_running(self.state_dir, timeout)
        except server.NotRunning:
            self.stop()
            raise RuntimeError(f"emulator did not start:\n{self.log_path.read_text()}") from None
        self.facts = EmulatorFacts.from_json(status.as_dict())
        return self.facts

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup runs."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def workspace(self) -> Workspace:
        assert self.facts is not None, "start() the emulator first"
        return connect_emulator(facts=self.facts)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """The first truthy value of `predicate`, polled every 0.1 s; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.1)


@dataclass
class OwnEmulator:
    """A test's own emulator and the workspace connected to it (reconnected on restarts)."""

    running: RunningEmulator
    workspace: Workspace

    @property
    def ml(self) -> Any:
        return self.workspace.ml_client

    @property
    def state_dir(self) -> Path:
        return self.running.state_dir

    @property
    def pid(self) -> int:
        assert self.running.process is not None
        return self.running.process.pid


def sdk_invoke(
    ml_client: Any, endpoint: str, request_file: Path | str, *, deployment: str | None = None
) -> str:
    """`ml_client.online_endpoints.invoke`, with no deployment pinned by an earlier call.

    azure-ai-ml 1.35 adds its headers to the class-level dict
    `EndpointInvokeFields.DEFAULT_HEADER`, so one invoke with `deployment_name` pins every
    later invoke in the process to that deployment. Each call here starts from the SDK's
    default and puts the dict back afterwards, so no test's invoke leaks into another's.
    """
    from azure.ai.ml.constants._endpoint import EndpointInvokeFields

    saved = dict(EndpointInvokeFields.DEFAULT_HEADER)
    EndpointInvokeFields.DEFAULT_HEADER.pop("azureml-model-deployment", None)
    try:
        answer: str = ml_client.online_endpoints.invoke(
            endpoint_name=endpoint, request_file=str(request_file), deployment_name=deployment
        )
    finally:
        EndpointInvokeFields.DEFAULT_HEADER.clear()
        EndpointInvokeFields.DEFAULT_HEADER.update(saved)
    return answer


def example_yaml(example: str, folder: Path, **changes: Any) -> Path:
    """A copy of examples/{example}.yml with `changes`, and absolute model, code and conda paths."""
    data = yaml.safe_load((EXAMPLES / f"{example}.yml").read_text())
    data.update(changes)
    if isinstance(data.get("model"), dict) and "path" in data["model"]:
        data["model"]["path"] = str(EXAMPLES / data["model"]["path"])
    if "code_configuration" in data:
        data["code_configuration"]["code"] = str(EXAMPLES / data["code_configuration"]["code"])
    if isinstance(data.get("environment"), dict) and "conda_file" in data["environment"]:
        data["environment"]["conda_file"] = str(EXAMPLES / data["environment"]["conda_file"])
    path = folder / f"{data['name']}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def kubernetes_deployment(
    state_dir: Path, endpoint: str, name: str, *, kubernetes: bool = True, **changes: Any
) -> Any:
    """The blue example as a KubernetesOnlineDeployment (or managed) of `endpoint`, its model,
    code and environment registered in the emulator at `state_dir`."""
    from azure.ai.ml import load_online_deployment
    from azure.ai.ml.entities import KubernetesOnlineDeployment, ManagedOnlineDeployment

    from emulator.apply import register_local_assets

    loaded = load_online_deployment(EXAMPLES / "blue-deployment.yml")
    loaded.endpoint_name = endpoint
    register_local_assets(state_dir, loaded)
    kind = KubernetesOnlineDeployment if kubernetes else ManagedOnlineDeployment
    return kind(
        name=name,
        endpoint_name=endpoint,
        model=loaded.model,
        code_configuration=loaded.code_configuration,
        environment=loaded.environment,
        instance_count=1,
        **changes,
    )


def seed_tutorial_endpoint(emulator: RunningEmulator, endpoint: str, folder: Path) -> None:
    """`endpoint` as the tutorial has it before the rollout: blue (model-1) with all live
    traffic and green (model-2) at 0%; left as it is when it already exists."""
    from emulator.apply import apply_file

    state = emulator.state_dir
    apply_file(state, example_yaml("endpoint", folder, name=endpoint), if_missing=True)
    blue = example_yaml("blue-deployment", folder, endpoint_name=endpoint)
    apply_file(state, blue, all_traffic=True, if_missing=True)
    green = example_yaml("green-deployment", folder, endpoint_name=endpoint)
    apply_file(state, green, if_missing=True)


@pytest.fixture(scope="session", autouse=True)
def _private_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Changes made by tests go to an audit log of their own, never the developer's."""
    previous = os.environ.get("BLUEGREEN_HOME")
    os.environ["BLUEGREEN_HOME"] = str(tmp_path_factory.mktemp("bluegreen-home"))
    yield
    if previous is None:
        os.environ.pop("BLUEGREEN_HOME", None)
    else:
        os.environ["BLUEGREEN_HOME"] = previous


@pytest.fixture(scope="session")
def emulator_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], RunningEmulator]]:
    started: list[RunningEmulator] = []

    def make(name: str) -> RunningEmulator:
        running = RunningEmulator(tmp_path_factory.mktemp("emulators") / name)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def emulator(emulator_factory: Callable[[str], RunningEmulator]) -> RunningEmulator:
    """The session's shared emulator, already running."""
    running = emulator_factory("session")
    running.start()
    return running


@pytest.fixture(scope="session")
def workspace(emulator: RunningEmulator) -> Workspace:
    return emulator.workspace()


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES
