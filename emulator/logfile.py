"""Deployment logs that stay bounded: size-rotated files, and instance output with capped lines.

An instance's stdout and stderr go to a pipe; a thread per instance copies it to the
deployment's log (`pump`), so a chatty score.py costs the event loop nothing and a
slow disk only slows the instance that writes (its pipe fills). The log rotates as
Kubernetes' kubelet rotates container logs (10 MiB, 5 files by default): `blue.log` is
the current file, `blue.log.1` the previous one, up to `blue.log.4`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

LOG_FILES = 5
MAX_LINE_BYTES = 16 * 1024
_CHUNK = 64 * 1024
_GATHER_S = 0.05


class RotatingLog:
    """Appends to `path`; a write that would take it past `max_bytes` rotates it first.

    The file stays open between writes and its size is counted here, so a log line costs
    one write call (an instance that logs every request would otherwise add a stat, an
    open and a close to each request, in the router's process).
    """

    def __init__(self, path: Path, *, max_bytes: int, files: int = LOG_FILES) -> None:
        self.path = path
        self.max_bytes = max(1, max_bytes)
        self.files = max(1, files)
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        """Append whole lines (thread-safe)."""
        with self._lock:
            handle = self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
                handle = self._open()
            handle.write(data)
            self._size += len(data)

    def close(self) -> None:
        """Close the file; a later write opens it again (a new file if it was removed)."""
        with self._lock:
            self._close()

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
            self._size = self._file.tell()
        return self._file

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _rotate(self) -> None:
        self._close()
        if self.files == 1:
            self.path.unlink(missing_ok=True)
            return
        for n in range(self.files - 1, 0, -1):
            source = self.path if n == 1 else backup(self.path, n - 1)
            with contextlib.suppress(FileNotFoundError):
                os.replace(source, backup(self.path, n))


def backup(path: Path, n: int) -> Path:
    """The n-th rotated file of a log (1 = the most recent one)."""
    return path.with_name(f"{path.name}.{n}")


def remove_log(path: Path) -> None:
    """Delete a log and its rotated files."""
    path.unlink(missing_ok=True)
    for old in path.parent.glob(f"{path.name}.*"):
        if old.name[len(path.name) + 1 :].isdigit():
            old.unlink(missing_ok=True)


def pump(
    fd: int,
    log: RotatingLog,
    *,
    max_line: int = MAX_LINE_BYTES,
    tee: Callable[[list[bytes]], None] | None = None,
) -> None:
    """Copy a child's output from the read end `fd` of its pipe to `log`, until EOF.

    A line longer than `max_line` bytes is cut there, with a note of how much was dropped.
    `tee`, when given, gets the same lines as they are written.
    """
    partial = bytearray()
    dropped = 0

    def take(piece: bytes, *, ends: bool, out: list[bytes]) -> None:
        nonlocal dropped
        room = max_line - len(partial)
        if len(piece) > room:
            dropped += len(piece) - room
            piece = piece[: max(room, 0)]
        partial.extend(piece)
        if ends:
            if dropped:
                partial.extend(f" [... {dropped} more bytes of this line dropped]".encode())
            partial.extend(b"\n")
            out.append(bytes(partial))
            partial.clear()
            dropped = 0

    with open(fd, "rb", buffering=0) as stream:
        while True:
            chunk = stream.read(_CHUNK)
            out: list[bytes] = []
            if not chunk:
                if partial or dropped:
                    take(b"", ends=True, out=out)
                    log.write(b"".join(out))
                    if tee is not None:
                        tee(out)
                return
            *complete, rest = chunk.split(b"\n")
            for piece in complete:
                take(piece, ends=True, out=out)
            take(rest, ends=False, out=out)
            if out:
                log.write(b"".join(out))
                if tee is not None:
                    tee(out)
            if len(chunk) < _CHUNK:
                # Drained: let output gather for a moment rather than wake for every line
                # (a score.py that logs each request would cost the router a wake-up per
                # request); a full pipe only makes the writing instance wait.
                time.sleep(_GATHER_S)
