"""The emulator starts, reports its connection facts and serves the SDK's list call."""

from __future__ import annotations

import json
import subprocess
import sys

from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator


def test_status_json_prints_the_connection_facts(emulator: RunningEmulator) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "status",
            "--json",
            "--state-dir",
            str(emulator.state_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    facts = json.loads(result.stdout)
    expected = {
        "arm_url",
        "metrics_url",
        "ca_cert",
        "token",
        "subscription_id",
        "resource_group",
        "workspace_name",
        "location",
        "pid",
    }
    assert expected <= facts.keys()
    assert facts["arm_url"].startswith("https://127.0.0.1:")
    assert facts["pid"] == emulator.process.pid if emulator.process else False


def test_status_exits_1_when_nothing_runs(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "status", "--json", "--state-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1


def test_mlclient_lists_endpoints(workspace: Workspace) -> None:
    assert isinstance(list(workspace.ml_client.online_endpoints.list()), list)
