"""One instance of a deployment: what it runs, its limits and probes, and its log's tail.

The process itself is started, watched and stopped by `emulator.instances`; its probes
and memory watch are in `emulator.instance_health`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulator.logfile import backup
from emulator.upstream import Upstream

# The longest file name of an instance's socket, so that server.py can pick a folder whose
# socket paths fit AF_UNIX's 108 bytes. Longer names become a 10-character tag, "-", the
# emulator's pid (Linux's pid_max is at most 2**22: 7 digits) and ".sock" (23 at most).
SOCKET_NAME_MAX = 40


class InitFailed(Exception):
    """A new instance exited or never became ready; the message holds its last log lines."""


@dataclass(frozen=True)
class InstanceSpec:
    """What an instance runs: the same spec gives interchangeable instances."""

    endpoint: str
    deployment: str
    code_dir: str
    script: str
    model_dir: str
    env: tuple[tuple[str, str], ...] = ()
    max_concurrency: int = 1
    # The interpreter of the deployment's built environment; "" for the emulator's own.
    python: str = ""

    @property
    def fingerprint(self) -> str:
        raw = json.dumps(
            [self.code_dir, self.script, self.model_dir, self.env, self.max_concurrency]
            + ([self.python] if self.python else [])
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class InstanceLimits:
    """What one instance may use: memory (RSS), and the size of each deployment log file."""

    memory_bytes: int = 2 * 2**30
    log_bytes: int = 10 * 2**20


@dataclass(frozen=True)
class Probe:
    """Azure's probe settings, in seconds."""

    initial_delay: float = 10.0
    period: float = 10.0
    timeout: float = 2.0
    success_threshold: int = 1
    failure_threshold: int = 30

    @property
    def startup_deadline(self) -> float:
        """How long a starting instance may take before it counts as failed."""
        return max(30.0, self.initial_delay + self.period * self.failure_threshold)


@dataclass(eq=False)
class Instance:
    id: str
    spec: InstanceSpec
    socket: Path
    upstream: Upstream
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    launched: bool = False
    retired: bool = False
    in_flight: int = 0
    restarts: int = 0
    started_at: float = field(default_factory=time.time)
    log_pump: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


def tail_file(path: Path, lines: int) -> str:
    """The last `lines` lines of a log ('' when it does not exist).

    When the current file has fewer lines (it was just rotated), the rest come from
    the previous file.
    """
    text = _tail(path, lines)
    have = len(text.splitlines())
    if have < lines:
        earlier = _tail(backup(path, 1), lines - have)
        if earlier:
            text = f"{earlier}\n{text}" if text else earlier
    return text


def _tail(path: Path, lines: int) -> str:
    if lines <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block, data = 8192, b""
            while size > 0 and data.count(b"\n") <= lines:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
