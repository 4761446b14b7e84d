"""Faults: the emulator SIGKILLed in the middle of its work, then started again.

An emulator of its own is killed during a scale, a traffic change and an endpoint delete.
After each restart: the endpoint and deployment documents and the traffic are consistent,
every operation has ended (none stays InProgress for a poller to wait on), no instance
process is left over or started for something deleted, and the first scoring request
after the restart is served (it waits for the starting instances instead of getting 503).
Also: an instance whose emulator is already gone when it starts exits by itself, a stray
instance of an earlier run is killed on start, and the instances' socket folder is private.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from azure.ai.ml import load_online_deployment
from azure.core.exceptions import ResourceNotFoundError

from emulator import socket_dirs
from emulator.apply import apply_file, register_local_assets
from rollout import changes
from tests.conftest import REPO, OwnEmulator, RunningEmulator, example_yaml, wait_until

log = logging.getLogger(__name__)

ENDPOINT = "faults-ep"
DOOMED = "faults-doomed"
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}
# Instances start in about 2 s; on a busy machine more. A request that comes meanwhile
# waits up to the request timeout, so give the deployments room.
REQUEST_SETTINGS = {"request_timeout_ms": 30000, "max_concurrent_requests_per_instance": 1}
NOBODY = 65534


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def workers(state_dir: Path) -> list[psutil.Process]:
    """Every live instance process of this state directory, whichever run started it:
    its code and its socket are under the state directory."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if "emulator.worker" not in cmdline or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(arg.startswith(str(state_dir)) for arg in cmdline):
            found.append(process)
    return found


def _arg(process: psutil.Process, name: str) -> str:
    cmdline = process.cmdline()
    return str(cmdline[cmdline.index(name) + 1])


class Faults(OwnEmulator):
    def crash_and_restart(self) -> float:
        """SIGKILL, then start again; returns when `status` says running (monotonic time)."""
        self.running.kill()
        self.running.start()
        self.workspace = self.running.workspace()
        return time.monotonic()

    def operations(self, status: str | None = None) -> list[dict[str, Any]]:
        """Operations as the state database holds them (read-only)."""
        db = sqlite3.connect(f"file:{self.state_dir / 'state.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT doc FROM operations ORDER BY rowid").fetchall()
        finally:
            db.close()
        docs = [json.loads(r[0]) for r in rows]
        return [d for d in docs if status is None or d["status"] == status]

    def last_operation(self, kind: str, target: str) -> str:
        ops = [o for o in self.operations() if o["kind"] == kind and o["target"] == target]
        assert ops, f"no {kind} operation on {target}"
        return str(ops[-1]["id"])

    def poll(self, op_id: str) -> dict[str, Any]:
        """The operation's status as an SDK poller reads it (Azure-AsyncOperation)."""
        facts = self.running.facts
        assert facts is not None
        url = (
            f"{facts.arm_url}/subscriptions/{facts.subscription_id}/providers/"
            f"Microsoft.MachineLearningServices/locations/{facts.location}/"
            f"mfeOperationsStatus/{op_id}?api-version=2023-04-01-preview"
        )
        response = httpx.get(
            url, headers={"Authorization": f"Bearer {facts.token}"}, verify=facts.ca_cert
        )
        response.raise_for_status()
        return dict(response.json())

    def score(self, endpoint: str = ENDPOINT) -> httpx.Response:
        key = self.ml.online_endpoints.get_keys(endpoint).primary_key
        return httpx.post(
            self.ml.online_endpoints.get(endpoint).scoring_uri,
            json=SAMPLE,
            headers={"Authorization": f"Bearer {key}"},
            verify=self.workspace.verify,
            timeout=60,
        )

    def first_score_after(self, restarted: float) -> httpx.Response:
        response = self.score()
        log.info(
            "restart -> first answer %d in %.2f s",
            response.status_code,
            time.monotonic() - restarted,
        )
        return response

    def instance_count(self) -> int:
        """Instances faults-ep's deployments should have."""
        return sum(d.instance_count for d in self.ml.online_deployments.list(ENDPOINT))

    def assert_every_operation_ends(self, timeout: float = 60.0) -> None:
        wait_until(
            lambda: not self.operations("InProgress"),
            timeout,
            f"every operation to end; still InProgress: {self.operations('InProgress')}",
        )

    def assert_instances(self, expected: int, old: list[psutil.Process]) -> None:
        """The killed run's instances are gone and exactly `expected` of this run serve."""
        wait_until(lambda: not any(_alive(p) for p in old), 10.0, "the old run's instances to exit")
        mine = f"-{self.pid}.sock"
        wait_until(
            lambda: len(workers(self.state_dir)) == expected,
            60.0,
            f"{expected} instance processes (found {len(workers(self.state_dir))})",
        )
        assert all(_arg(p, "--socket").endswith(mine) for p in workers(self.state_dir))


@pytest.fixture(scope="module")
def faults(
    emulator_factory: Callable[[str], RunningEmulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Faults]:
    """faults-ep: blue (1 instance) with all live traffic and green (1 instance) at 0%."""
    running = emulator_factory("faults")
    running.start()
    folder = tmp_path_factory.mktemp("faults-yaml")
    apply_file(running.state_dir, example_yaml("endpoint", folder, name=ENDPOINT))
    for example, extra in (("blue-deployment", {"all_traffic": True}), ("green-deployment", {})):
        path = example_yaml(
            example, folder, endpoint_name=ENDPOINT, request_settings=REQUEST_SETTINGS
        )
        apply_file(running.state_dir, path, **extra)
    faults = Faults(running, running.workspace())
    assert faults.score().status_code == 200
    yield faults
    running.stop()


def test_a_crash_during_a_scale_resumes_it_under_its_operation_id(faults: Faults) -> None:
    before = workers(faults.state_dir)
    assert len(before) == 2
    changes.begin_scale(faults.workspace, ENDPOINT, "blue", 2)
    op_id = faults.last_operation("deployment", f"{ENDPOINT}/blue")
    # Kill while the new instance starts.
    wait_until(lambda: len(workers(faults.state_dir)) == 3, 20.0, "the new instance to spawn")
    old = workers(faults.state_dir)
    faults.running.kill()
    assert faults.operations()[-1]["id"] == op_id
    assert faults.operations()[-1]["status"] == "InProgress"

    restarted = faults.crash_and_restart()

    first = faults.first_score_after(restarted)
    assert first.status_code == 200, first.text
    faults.assert_every_operation_ends()
    assert faults.poll(op_id)["status"] == "Succeeded"
    blue = faults.ml.online_deployments.get("blue", ENDPOINT)
    assert blue.instance_count == 2
    assert blue.provisioning_state == "Succeeded"
    assert dict(faults.ml.online_endpoints.get(ENDPOINT).traffic) == {"blue": 100, "green": 0}
    faults.assert_instances(3, old)


def test_a_crash_during_a_traffic_change_keeps_the_change_and_ends_its_operation(
    faults: Faults,
) -> None:
    old = workers(faults.state_dir)
    changes.begin_set_traffic(
        faults.workspace, ENDPOINT, traffic={"blue": 50, "green": 50}, mirror={}
    )
    faults.running.kill()
    op_id = faults.last_operation("endpoint", ENDPOINT)
    # The change takes 0.3 s: the crash came before it ended.
    assert faults.operations()[-1]["id"] == op_id
    assert faults.operations()[-1]["status"] == "InProgress"

    restarted = faults.crash_and_restart()

    first = faults.first_score_after(restarted)
    assert first.status_code == 200, first.text
    faults.assert_every_operation_ends()
    assert faults.poll(op_id)["status"] == "Succeeded"
    endpoint = faults.ml.online_endpoints.get(ENDPOINT)
    assert endpoint.provisioning_state == "Succeeded"
    assert dict(endpoint.traffic) == {"blue": 50, "green": 50}
    served = {faults.score().headers["azureml-model-deployment"] for _ in range(6)}
    assert served == {"blue", "green"}
    faults.assert_instances(3, old)


def test_a_crash_during_an_endpoint_delete_finishes_it_and_starts_none_of_its_deployments(
    faults: Faults, tmp_path: Path
) -> None:
    apply_file(faults.state_dir, example_yaml("endpoint", tmp_path, name=DOOMED))
    doomed = example_yaml("blue-deployment", tmp_path, name="doomed", endpoint_name=DOOMED)
    apply_file(faults.state_dir, doomed, all_traffic=True)
    serving = faults.instance_count()
    old = workers(faults.state_dir)
    assert len(old) == serving + 1
    faults.ml.online_endpoints.begin_delete(DOOMED)
    old_pid = faults.pid
    faults.running.kill()
    op_id = faults.last_operation("endpoint-delete", DOOMED)
    assert faults.operations()[-1]["status"] == "InProgress"

    # From the restart on, watch for any instance of the deleted endpoint's deployment that
    # the new run starts, however briefly it lives.
    started: set[int] = set()
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            for process in workers(faults.state_dir):
                with contextlib.suppress(psutil.Error, ValueError, IndexError):
                    ours = not _arg(process, "--socket").endswith(f"-{old_pid}.sock")
                    if ours and _arg(process, "--instance-id").startswith("doomed-"):
                        started.add(process.pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, name="doomed-watch")
    watcher.start()
    try:
        restarted = faults.crash_and_restart()
        first = faults.first_score_after(restarted)
        assert first.status_code == 200, first.text
        faults.assert_every_operation_ends()
        # Long enough for an instance of the deleted deployment to have started, had it been.
        time.sleep(3.0)
    finally:
        watching.set()
        watcher.join(10)

    assert not started, "instances of the deleted endpoint's deployment were started"
    assert faults.poll(op_id)["status"] == "Succeeded"
    with pytest.raises(ResourceNotFoundError):
        faults.ml.online_endpoints.get(DOOMED)
    assert [e.name for e in faults.ml.online_endpoints.list()] == [ENDPOINT]
    faults.assert_instances(serving, old)


def test_a_crash_during_a_deployment_delete_ends_the_provisioning_it_cut_short(
    faults: Faults, examples: Path
) -> None:
    """A deployment deleted while it was still being created: the restart finishes the
    delete, and the creation, which cannot go on, ends Failed saying why."""
    serving = faults.instance_count()
    old = workers(faults.state_dir)
    deployment = load_online_deployment(examples / "green-deployment.yml")
    deployment.endpoint_name = ENDPOINT
    deployment.name = "brief"
    register_local_assets(faults.state_dir, deployment)
    faults.ml.online_deployments.begin_create_or_update(deployment)
    create_id = faults.last_operation("deployment", f"{ENDPOINT}/brief")
    faults.ml.online_deployments.begin_delete("brief", ENDPOINT)
    faults.running.kill()
    delete_id = faults.last_operation("deployment-delete", f"{ENDPOINT}/brief")
    unfinished = {o["id"] for o in faults.operations("InProgress")}
    assert {create_id, delete_id} <= unfinished

    faults.crash_and_restart()

    faults.assert_every_operation_ends()
    created = faults.poll(create_id)
    assert created["status"] == "Failed"
    assert created["error"]["message"].startswith("interrupted by an emulator restart; ")
    assert faults.poll(delete_id)["status"] == "Succeeded"
    names = {d.name for d in faults.ml.online_deployments.list(ENDPOINT)}
    assert names == {"blue", "green"}
    assert faults.score().status_code == 200
    faults.assert_instances(serving, old)


def test_a_stray_instance_of_an_earlier_run_is_killed_when_the_emulator_starts(
    faults: Faults,
) -> None:
    # An instance whose emulator is gone but which lives on (here: its parent is this
    # test process, so its own parent watch never fires); its socket is in this state
    # directory's socket folder.
    template = workers(faults.state_dir)[0].cmdline()
    socket_dir = Path(json.loads((faults.state_dir / "server.json").read_text())["socket_dir"])
    command = list(template)
    command[command.index("--socket") + 1] = str(socket_dir / f"stray-0-{faults.pid}.sock")
    command[command.index("--instance-id") + 1] = "stray-0"
    if "--parent-pid" in command:
        command[command.index("--parent-pid") + 1] = str(os.getpid())
    stray = subprocess.Popen(
        command,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        assert stray.poll() is None, "the stray instance did not start"
        old = [p for p in workers(faults.state_dir) if p.pid != stray.pid]

        faults.crash_and_restart()

        wait_until(lambda: stray.poll() is not None, 10.0, "the stray instance to be killed")
        faults.assert_instances(faults.instance_count(), old)
    finally:
        if stray.poll() is None:
            stray.kill()
        stray.wait(10)


def test_an_instance_whose_emulator_died_before_it_started_exits_by_itself(
    tmp_path: Path, examples: Path
) -> None:
    """The emulator starts an instance and is killed at once: the instance sees a dead parent
    when it starts, and must not live on as an orphan."""
    log_path = tmp_path / "worker.log"
    launcher = (
        "import os, subprocess, sys\n"
        "log = open(sys.argv[1], 'wb')\n"
        "worker = subprocess.Popen(\n"
        "    [sys.executable, '-m', 'emulator.worker', '--socket', sys.argv[2],\n"
        "     '--code-dir', sys.argv[3], '--script', 'score.py', '--model-dir', sys.argv[4],\n"
        "     '--instance-id', 'orphan-0', '--parent-pid', str(os.getpid())],\n"
        "    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)\n"
        "print(worker.pid, flush=True)\n"
        "os._exit(0)\n"  # the way SIGKILL ends a parent: nothing waits for the child
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            launcher,
            str(log_path),
            str(tmp_path / "orphan.sock"),
            str(examples / "model-1" / "onlinescoring"),
            str(examples / "model-1"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    orphan = psutil.Process(int(done.stdout.strip()))
    try:
        wait_until(lambda: not _alive(orphan), 10.0, f"orphaned instance {orphan.pid} to exit")
    finally:
        if _alive(orphan):
            orphan.kill()
    assert "is gone" in log_path.read_text()
    assert not (tmp_path / "orphan.sock").exists()


# --- the instances' socket folder -------------------------------------------------------------


def _private_and_ours(folder: Path) -> bool:
    info = os.lstat(folder)
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and (stat.S_IMODE(info.st_mode) == 0o700)
    )


def test_instance_sockets_are_in_a_private_folder_of_the_state_directory(faults: Faults) -> None:
    socket_dir = Path(json.loads((faults.state_dir / "server.json").read_text())["socket_dir"])
    assert socket_dir == faults.state_dir / "sockets"
    assert _private_and_ours(socket_dir)
    assert all(Path(_arg(p, "--socket")).parent == socket_dir for p in workers(faults.state_dir))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make folders another user owns")
def test_socket_folders_another_user_made_first_are_neither_used_nor_touched(
    emulator_factory: Callable[[str], RunningEmulator], tmp_path: Path
) -> None:
    running = emulator_factory("squatted")
    state_dir = running.state_dir.resolve()
    state_dir.mkdir(parents=True)
    # Where earlier versions put the sockets (a name anyone can compute), and the folder in
    # the state directory, both made first by another user.
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    squatted = [Path(tempfile.gettempdir()) / f"bluegreen-{digest}", state_dir / "sockets"]
    for folder in squatted:
        folder.mkdir(mode=0o777)
        (folder / "planted").write_text("not yours")
        os.chown(folder, NOBODY, NOBODY)
    try:
        running.start()
        socket_dir = Path(json.loads((state_dir / "server.json").read_text())["socket_dir"])
        assert socket_dir not in squatted
        assert _private_and_ours(socket_dir)
        for folder in squatted:
            assert os.lstat(folder).st_uid == NOBODY
            assert (folder / "planted").read_text() == "not yours"
        # And it serves.
        seed = example_yaml("blue-deployment", tmp_path, endpoint_name="squat-ep")
        apply_file(state_dir, example_yaml("endpoint", tmp_path, name="squat-ep"))
        apply_file(state_dir, seed, all_traffic=True)
        ml = running.workspace().ml_client
        response = httpx.post(
            ml.online_endpoints.get("squat-ep").scoring_uri,
            json=SAMPLE,
            headers={
                "Authorization": f"Bearer {ml.online_endpoints.get_keys('squat-ep').primary_key}"
            },
            verify=running.workspace().verify,
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert [Path(_arg(p, "--socket")).parent for p in workers(state_dir)] == [socket_dir]
        running.stop()
        assert not socket_dir.exists()
    finally:
        running.stop()
        for folder in squatted:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_state_directory_too_deep_for_unix_sockets_gets_a_random_private_folder(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    first = socket_dirs.socket_dir(deep)
    second = socket_dirs.socket_dir(deep)
    try:
        assert first != second
        assert first.parent == Path(tempfile.gettempdir())
        assert _private_and_ours(first)
    finally:
        first.rmdir()
        second.rmdir()
