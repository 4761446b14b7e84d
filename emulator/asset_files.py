"""The files of local model and code versions: measured, hashed and copied in safely.

A model or code version registered with a local path (`file://` URI) is copied into
`<state dir>/assets/<kind>/<name>/<version>`. Names and versions are checked before any
path is built from them, every path is resolved and must stay inside that folder, and a
source is measured before it is copied: a folder over the size limit, one that holds the
state directory, or one with a symlink loop is refused. Measuring, hashing and copying run
in a worker thread (the caller's `asyncio.to_thread`), never on the event loop, so a big
model does not stall scoring.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from emulator import bodies
from emulator.errors import ApiError
from emulator.privacy import make_private

DEFAULT_MAX_ASSET_MB = 2048.0
_READ_BLOCK = 1 << 20


class AssetFiles:
    """The asset folders of one state directory."""

    def __init__(self, state_dir: Path, *, max_bytes: int) -> None:
        self.state_dir = state_dir.resolve()
        self.root = self.state_dir / "assets"
        self.max_bytes = max_bytes

    def folder(self, kind: str, name: str, version: str) -> Path:
        """The folder of one asset version; refuses any name that would leave its kind's folder."""
        bodies.check_asset_id(kind, name, version)
        base = (self.root / kind).resolve()
        target = (base / name / version).resolve()
        if target.parent.parent != base:
            raise bodies.bad(
                f"{kind[:-1]} '{name}' version '{version}' resolves outside the emulator's asset "
                "folder; choose another name"
            )
        return target

    def source(self, uri: object, *, what: str) -> Path:
        """The local file or folder a `file://` URI names, checked before anything is read."""
        if not isinstance(uri, str) or not uri:
            raise bodies.bad(f"{what} is required")
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            raise bodies.bad(
                f"{what} is {bodies.show(uri)}; the emulator registers local files only "
                "(file:// URIs)"
            )
        path = Path(unquote(parsed.path) if parsed.scheme else uri)
        if not path.is_absolute() or not path.exists():
            raise bodies.bad(f"{what}: {path} does not exist on this machine")
        resolved = path.resolve()
        if resolved == self.state_dir or self.state_dir.is_relative_to(resolved):
            raise bodies.bad(
                f"{what}: {path} holds the emulator's state directory; register the model's "
                "own folder"
            )
        if resolved.is_relative_to(self.state_dir):
            raise bodies.bad(
                f"{what}: {path} is inside the emulator's state directory; register the "
                "original files"
            )
        return path

    def measure(self, source: Path, *, what: str) -> str:
        """The content digest of a source, after checking its size (run in a thread)."""
        files = self._files(source, what=what)
        return _digest(source, files)

    def copy_in(self, kind: str, source: Path, target: Path) -> None:
        """Copy a source into its asset folder atomically (run in a thread).

        The copy is made next to the target and renamed into place, so a failure or a
        crash never leaves half an asset where a deployment would find it.
        """
        base = (self.root / kind).resolve()
        if not target.is_relative_to(base):
            raise bodies.bad(f"{target} is outside the emulator's asset folder")
        staging = base / f".staging-{uuid.uuid4().hex}"
        try:
            if kind == "models":
                destination = staging / source.name
                if source.is_dir():
                    shutil.copytree(source, destination)
                else:
                    destination.parent.mkdir(parents=True)
                    shutil.copy2(source, destination)
            else:
                shutil.copytree(source, staging)
            make_private(staging)  # copies keep their source's modes otherwise
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _files(self, source: Path, *, what: str) -> list[Path]:
        """Every file under a source (symlinks followed, loops refused), within the limit."""
        return _source_files(
            source, what=what, check_total=lambda total: self._check_size(total, source, what=what)
        )

    def _check_size(self, size: int, source: Path, *, what: str) -> None:
        if size > self.max_bytes:
            raise ApiError(
                400,
                "BadArgument",
                f"{what}: {source} holds more than {self.max_bytes / 2**20:,.0f} MiB, the "
                "emulator's limit for one asset (python -m emulator serve --max-asset-mb N "
                "raises it)",
            )


def content_digest(path: Path) -> str:
    """A hash of a file's or folder's content and layout, to tell versions apart: the same
    files, read the same way, as the emulator hashes when it registers them."""
    return _digest(path, _source_files(path, what=str(path)))


def _source_files(
    source: Path, *, what: str, check_total: Callable[[int], None] = lambda _: None
) -> list[Path]:
    """Every file of a source, sorted: the file itself, or each file under the folder
    (symlinks followed, loops refused, `__pycache__` left out); `check_total` sees the
    running size after each file."""
    if not source.is_dir():
        check_total(source.stat().st_size)
        return [source]
    files: list[Path] = []
    total = 0
    seen: set[tuple[int, int]] = set()
    for top, dirs, names in os.walk(source, followlinks=True):
        info = os.stat(top)
        if (info.st_dev, info.st_ino) in seen:
            raise bodies.bad(f"{what}: {top} is a symlink loop inside {source}")
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = Path(top) / name
            if not path.is_file():
                continue
            total += path.stat().st_size
            check_total(total)
            files.append(path)
    return sorted(files)


def _digest(source: Path, files: list[Path]) -> str:
    """Each file's path from the source's parent, its size and its bytes, in order.

    The path includes the source's own name, so a folder `model/` holding `m.pkl` and
    `m.pkl` alone differ: a deployment finds its model at that path under
    AZUREML_MODEL_DIR, and the two layouts are not interchangeable. Sizes delimit the
    bytes, so no two sets of files can run together into the same stream.
    """
    h = hashlib.sha256()
    for file in files:
        h.update(file.relative_to(source.parent).as_posix().encode())
        h.update(b"\0%d\0" % file.stat().st_size)
        with open(file, "rb") as f:
            while block := f.read(_READ_BLOCK):
                h.update(block)
    return h.hexdigest()
