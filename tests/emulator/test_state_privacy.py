"""The state directory holds endpoint keys, the token secret and TLS keys: its owner's only."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RunningEmulator
from tests.emulator.test_data_plane import Plane


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_state_directory_is_0700_and_its_files_0600_even_ones_left_readable(
    emulator_factory: Callable[[str], RunningEmulator], examples: Path, tmp_path: Path
) -> None:
    running = emulator_factory("private")
    state = running.state_dir
    state.mkdir(parents=True)
    state.chmod(0o755)
    # What an earlier version left: a world-readable database in a world-readable folder.
    sqlite3.connect(state / "state.db").close()
    (state / "state.db").chmod(0o644)
    (state / "logs").mkdir(mode=0o755)
    # A symlink out of the state directory is never followed.
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    (outside / "notes.txt").write_text("not the emulator's")
    (outside / "notes.txt").chmod(0o644)
    (state / "linked-folder").symlink_to(outside)
    (state / "linked-file").symlink_to(outside / "notes.txt")

    running.start()
    try:
        plane = Plane(running, examples)
        plane.endpoint("private-ep")
        plane.deploy("private-ep", "blue")
        plane.traffic("private-ep", {"blue": 100})
        assert plane.score("private-ep", {}).status_code == 200
        plane.http.close()

        seen: list[str] = []
        for root, folders, files in os.walk(state):
            assert _mode(Path(root)) == 0o700, root
            for name in folders + files:
                path = Path(root) / name
                if path.is_symlink():
                    continue
                seen.append(str(path.relative_to(state)))
                # Only a file its owner may execute keeps that bit; no fixture file has it.
                assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
        for expected in ("state.db", "state.db-wal", "requests.db", "server.json", "arm-token"):
            assert expected in seen
        assert "tls/server-key.pem" in seen
        assert any(p.startswith("logs/private-ep/") for p in seen)
        assert any(p.startswith("assets/") for p in seen)
    finally:
        running.stop()
    assert _mode(outside) == 0o755
    assert _mode(outside / "notes.txt") == 0o644
