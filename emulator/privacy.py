"""The state directory is its owner's only: folders 0700, files 0600.

It holds endpoint keys, the token secret and the TLS keys. `serve` sets the umask so
that what the emulator creates is private; `make_private` fixes what is already there
(an earlier version's files, assets copied with their source's modes).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path


def make_private(top: Path) -> None:
    """Folders 0700 and files 0600 under `top`, never following a symlink out of it.

    A file its owner may execute keeps that bit (0700): a code asset may ship a tool.
    """
    # fwalk hands out each folder as a descriptor opened without following links, so a
    # symlink (to a folder or a file) is never changed nor entered.
    for _, _, files, dir_fd in os.fwalk(top, follow_symlinks=False):
        if stat.S_IMODE(os.fstat(dir_fd).st_mode) != 0o700:
            os.fchmod(dir_fd, 0o700)
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    continue
                mode = stat.S_IMODE(info.st_mode)
                wanted = 0o700 if mode & stat.S_IXUSR else 0o600
                if mode != wanted:
                    os.chmod(name, wanted, dir_fd=dir_fd)
