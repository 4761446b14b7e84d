"""The servers the benchmark measures, started and stopped by it.

- `EmulatorServer`: `python -m emulator serve` in a temporary state directory, driven
  through its command line (`status --json`, `apply -f`) and its REST API (listKeys).
- `Azmlinfsrv`: Microsoft's inference server (`azureml-inference-server-http`) in a
  venv of its own under `bench/.venv-azmlinfsrv` (its pins clash with azure-ai-ml's),
  one gunicorn worker, serving the same score.py and AZUREML_MODEL_DIR as the
  emulator's instance.

Every process started here is started in a session of its own and stopped by its
own id, even when the benchmark fails half-way.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
AZ_VENV = BENCH / ".venv-azmlinfsrv"
AZ_REQUIREMENTS = BENCH / "requirements-azmlinfsrv.txt"

# azmlinfsrv binds 0.0.0.0 and has no host option; this launcher runs its own entry
# point with the host set to the loopback address, so nothing listens beyond this machine.
_AZ_LAUNCHER = (
    "import sys\n"
    "from azureml_inference_server_http import amlserver\n"
    "amlserver.DEFAULT_HOST = '127.0.0.1'\n"
    "sys.argv = ['azmlinfsrv', *sys.argv[1:]]\n"
    "amlserver.run()\n"
)


class BenchError(Exception):
    """A server did not start or answer as the benchmark needs; the message says why."""


def _tail(path: Path, lines: int = 15) -> str:
    """The end of a log, quoted into an error (the log is deleted with the temporary folder)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process_group(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the session this benchmark started (its leader is `process`), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


# process facts


def memory_mib(pid: int) -> dict[str, float]:
    """RSS, USS and PSS of one process, in MiB."""
    info = psutil.Process(pid).memory_full_info()
    mib = 1024 * 1024
    return {
        "rss_mib": round(info.rss / mib, 1),
        "uss_mib": round(info.uss / mib, 1),
        "pss_mib": round(getattr(info, "pss", 0) / mib, 1),
    }


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


@dataclass(frozen=True)
class WorkerProcess:
    """An emulator instance, as its command line describes it."""

    pid: int
    instance_id: str
    socket: str
    code_dir: str
    script: str
    model_dir: str


def _arg(cmdline: list[str], flag: str) -> str:
    try:
        return cmdline[cmdline.index(flag) + 1]
    except (ValueError, IndexError):
        raise BenchError(f"worker command line has no {flag}: {cmdline}") from None


# the emulator


class EmulatorServer:
    def __init__(self, state_dir: Path, *, root: Path = REPO, python: str = sys.executable) -> None:
        self.state_dir = state_dir
        self.root = root
        self.python = python
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.facts: dict[str, Any] = {}
        self._http: httpx.Client | None = None

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-m", "emulator", *args, "--state-dir", str(self.state_dir)],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, timeout: float = 90.0) -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [self.python, "-m", "emulator", "serve", "--state-dir", str(self.state_dir)],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"the emulator exited at start:\n{_tail(self.log_path)}")
            result = self.cli("status", "--json", timeout=30)
            if result.returncode == 0:
                self.facts = json.loads(result.stdout)
                return self.facts
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the emulator did not start in {timeout:.0f} s: {result.stdout}\n"
                    f"{_tail(self.log_path)}"
                )
            time.sleep(0.3)

    @property
    def pid(self) -> int:
        return int(self.facts["pid"])

    @property
    def port(self) -> int:
        return int(str(self.facts["arm_url"]).rsplit(":", 1)[1])

    def apply(self, path: Path, *, all_traffic: bool = False) -> str:
        args = ["apply", "-f", str(path)] + (["--all-traffic"] if all_traffic else [])
        result = self.cli(*args, timeout=300)
        if result.returncode != 0:
            raise BenchError(f"apply -f {path} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.facts["arm_url"],
                verify=self.facts["ca_cert"],
                headers={"Authorization": f"Bearer {self.facts['token']}"},
                params={"api-version": "2023-04-01"},
                timeout=30.0,
            )
        return self._http

    def primary_key(self, endpoint: str) -> str:
        ws = (
            f"/subscriptions/{self.facts['subscription_id']}/resourceGroups/"
            f"{self.facts['resource_group']}/providers/Microsoft.MachineLearningServices/"
            f"workspaces/{self.facts['workspace_name']}"
        )
        response = self._client().post(f"{ws}/onlineEndpoints/{endpoint}/listKeys")
        response.raise_for_status()
        return str(response.json()["primaryKey"])

    def workers(self) -> list[WorkerProcess]:
        """The instance processes the emulator runs now, from their command lines."""
        found = []
        for child in psutil.Process(self.pid).children(recursive=True):
            try:
                cmdline = child.cmdline()
            except psutil.Error:
                continue
            if "emulator.worker" not in cmdline:
                continue
            found.append(
                WorkerProcess(
                    pid=child.pid,
                    instance_id=_arg(cmdline, "--instance-id"),
                    socket=_arg(cmdline, "--socket"),
                    code_dir=_arg(cmdline, "--code-dir"),
                    script=_arg(cmdline, "--script"),
                    model_dir=_arg(cmdline, "--model-dir"),
                )
            )
        return found

    def worker(self, endpoint: str, deployment: str) -> WorkerProcess:
        """The one instance of a deployment (its socket is named `{endpoint}-{instance id}-...`)."""
        mine = [
            w
            for w in self.workers()
            if w.instance_id.startswith(f"{deployment}-")
            and Path(w.socket).name.startswith(f"{endpoint}-{w.instance_id}-")
        ]
        if len(mine) != 1:
            raise BenchError(f"expected one instance of '{endpoint}/{deployment}', found {mine}")
        return mine[0]

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.cli("stop", timeout=40)
        _stop_process_group(self.process)


# azmlinfsrv


def _azmlinfsrv_requirements(sklearn_version: str) -> list[str]:
    """The pinned server plus the model's libraries at the versions the emulator runs."""
    lines = [
        line.strip()
        for line in AZ_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    lines.append(f"scikit-learn=={sklearn_version}")
    for name in ("joblib", "numpy", "scipy"):
        lines.append(f"{name}=={importlib.metadata.version(name)}")
    return lines


def ensure_azmlinfsrv_venv(sklearn_version: str) -> Path:
    """Create or update bench/.venv-azmlinfsrv and return its python (idempotent)."""
    requirements = _azmlinfsrv_requirements(sklearn_version)
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    python = AZ_VENV / "bin" / "python"
    marker = AZ_VENV / ".installed"
    if python.exists() and marker.exists() and marker.read_text().strip() == digest:
        return python
    log.info("installing azmlinfsrv into %s: %s", AZ_VENV, " ".join(requirements))
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(AZ_VENV)], check=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *requirements],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        raise BenchError(f"pip install into {AZ_VENV} failed:\n{install.stdout}{install.stderr}")
    marker.write_text(digest + "\n")
    return python


class Azmlinfsrv:
    """`azmlinfsrv --entry_script S --model_dir M --port P --worker_count 1` on 127.0.0.1."""

    def __init__(self, python: Path, log_path: Path) -> None:
        self.python = python
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def version(self) -> str:
        result = subprocess.run(
            [
                str(self.python),
                "-c",
                "import importlib.metadata as m; print(m.version('azureml-inference-server-http'),"
                " m.version('gunicorn'), m.version('flask'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        server, gunicorn, flask = result.stdout.split()
        return f"azureml-inference-server-http {server} (gunicorn {gunicorn}, Flask {flask})"

    def start(self, *, code_dir: str, script: str, model_dir: str, timeout: float = 120.0) -> None:
        self.port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AZUREML_", "AML_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env.update(AML_APP_ROOT=code_dir, WORKER_COUNT="1", PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [
                    str(self.python),
                    "-c",
                    _AZ_LAUNCHER,
                    "--entry_script",
                    os.path.join(code_dir, script),
                    "--model_dir",
                    model_dir,
                    "--port",
                    str(self.port),
                    "--worker_count",
                    "1",
                ],
                cwd=code_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"azmlinfsrv exited at start:\n{_tail(self.log_path)}")
            # GET / answers once the gunicorn worker has imported score.py and run init().
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{self.port}/", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"azmlinfsrv was not ready after {timeout:.0f} s:\n{_tail(self.log_path)}")

    @property
    def master_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        return [c.pid for c in psutil.Process(self.master_pid).children(recursive=True)]

    def stop(self) -> None:
        if self.process is not None:
            _stop_process_group(self.process)
