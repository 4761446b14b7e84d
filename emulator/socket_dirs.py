"""The private folder of the instances' Unix sockets, and what an earlier run left there."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from emulator.instance import SOCKET_NAME_MAX

log = logging.getLogger(__name__)

# sun_path of AF_UNIX is 108 bytes, the terminating NUL included.
_UNIX_PATH_MAX = 107


def socket_dir(state_dir: Path) -> Path:
    """A folder of ours alone (0700) for the instances' Unix sockets.

    `sockets` in the state directory when the longest socket path fits AF_UNIX's 108 bytes,
    else a folder with a random name in the temp directory: a predictable name in a shared
    /tmp is one another user can create first, to make the emulator fail or to hijack it.
    """
    preferred = state_dir / "sockets"
    if len(os.fsencode(preferred)) + 1 + SOCKET_NAME_MAX <= _UNIX_PATH_MAX:
        try:
            os.mkdir(preferred, 0o700)
        except FileExistsError:
            log.warning(
                "%s exists and is not a folder of ours; instance sockets go to a private "
                "folder in %s instead",
                preferred,
                tempfile.gettempdir(),
            )
        else:
            return _checked_private(preferred)
    return _checked_private(Path(tempfile.mkdtemp(prefix="bluegreen-")))


def _checked_private(folder: Path) -> Path:
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"socket folder {folder} is not a folder owned by this user")
    os.chmod(folder, 0o700)
    return folder


def legacy_socket_dir(state_dir: Path) -> Path:
    """Where earlier versions put the sockets (a name anyone could predict)."""
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"bluegreen-{digest}"


def remove_if_ours(folder: Path) -> None:
    """Remove a socket folder an earlier run left; never one another user owns."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
        shutil.rmtree(folder, ignore_errors=True)
    else:
        log.warning("leaving %s alone: it is not a folder of ours", folder)


def kill_strays(socket_dirs: list[Path], timeout: float = 5.0) -> int:
    """Kill this user's instance processes whose socket is in one of `socket_dirs`.

    Instances exit when their emulator dies; these are the ones an earlier run of this
    state directory left anyway (the lock we hold says that run is over).
    """
    folders = {str(d) for d in socket_dirs}
    strays: list[psutil.Process] = []
    for process in psutil.process_iter(["cmdline", "uids"]):
        cmdline = process.info["cmdline"] or []
        uids = process.info["uids"]
        if "emulator.worker" not in cmdline or "--socket" not in cmdline or uids is None:
            continue
        at = cmdline.index("--socket") + 1
        in_folder = at < len(cmdline) and os.path.dirname(cmdline[at]) in folders
        if in_folder and uids.real == os.getuid() and process.pid != os.getpid():
            strays.append(process)
    for process in strays:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(strays, timeout=timeout)
    return len(strays)
