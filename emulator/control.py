"""Finding, checking and stopping the emulator of a state directory.

One server per state directory: `lock` (a file lock) guarantees it. The running server
writes `server.json` with its pid and URLs; `status` reads that, checks the process holds
the lock and answers on /health, and adds the ARM token and CA path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from emulator.auth import arm_token
from emulator.store import Store
from emulator.workspace import LOCATION, RESOURCE_GROUP, WORKSPACE

DEFAULT_STATE_DIR = ".emulator"


class NotRunning(Exception):
    """No emulator answers for this state directory."""


class AlreadyRunning(Exception):
    """Another emulator already serves this state directory."""


def state_dir_from(value: str | None) -> Path:
    raw = value or os.environ.get("EMULATOR_STATE_DIR") or DEFAULT_STATE_DIR
    return Path(raw).expanduser().resolve()


@contextlib.contextmanager
def lock(state_dir: Path) -> Iterator[TextIO]:
    handle = open(state_dir / "server.lock", "a+")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise AlreadyRunning(
            f"an emulator is already running for state directory {state_dir}"
        ) from exc
    try:
        yield handle
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def lock_is_held(state_dir: Path) -> bool:
    path = state_dir / "server.lock"
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@dataclass(frozen=True)
class Status:
    arm_url: str
    metrics_url: str
    ca_cert: str
    token: str
    subscription_id: str
    resource_group: str
    workspace_name: str
    location: str
    pid: int
    # The Log Analytics query API (logs_api.py): LogsQueryClient(endpoint=logs_url).
    logs_url: str
    log_analytics_workspace_id: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def status(state_dir: Path, *, timeout: float = 5.0) -> Status:
    """Connection facts of the running emulator; raises NotRunning."""
    info_path = state_dir / "server.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise NotRunning(f"no emulator has run with state directory {state_dir}") from exc
    pid = info.get("pid")
    if not pid or not lock_is_held(state_dir):
        raise NotRunning(f"the emulator for state directory {state_dir} is not running")
    ca = state_dir / "tls" / "ca.pem"
    try:
        response = httpx.get(f"{info['arm_url']}/health", verify=str(ca), timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise NotRunning(
            f"the emulator (pid {pid}) for {state_dir} does not answer at {info['arm_url']}: {exc}"
        ) from exc
    store = Store(state_dir / "state.db")
    try:
        subscription = store.get_meta("subscription_id") or ""
        log_workspace = store.get_meta("log_analytics_workspace_id") or ""
    finally:
        store.close()
    return Status(
        arm_url=info["arm_url"],
        metrics_url=info["metrics_url"],
        ca_cert=str(ca),
        token=arm_token(state_dir),
        subscription_id=subscription,
        resource_group=RESOURCE_GROUP,
        workspace_name=WORKSPACE,
        location=LOCATION,
        pid=int(pid),
        logs_url=f"{info['arm_url']}/loganalytics",
        log_analytics_workspace_id=log_workspace,
    )


def wait_until_running(state_dir: Path, timeout: float) -> Status:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return status(state_dir, timeout=2.0)
        except NotRunning:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(state_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the running emulator; False when none was running."""
    try:
        info = json.loads((state_dir / "server.json").read_text())
    except (OSError, ValueError):
        return False
    pid = info.get("pid")
    if not pid or not lock_is_held(state_dir):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while lock_is_held(state_dir):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.5)
            break
        time.sleep(0.1)
    return True
