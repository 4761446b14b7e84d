"""Deployments in their own environments: the conda file's packages, built with uv, cached.

A model pickled with scikit-learn 1.2.2 is served by a deployment whose environment pins
it, next to the sample (scikit-learn 1.9.1) on the same endpoint; a build that fails
fails its deployment with the installer's output in getLogs and disturbs nothing else; a
python= the emulator does not run is refused before anything starts; deployments asking
for one environment at once share one build.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.apply import ApplyError, apply_file
from emulator.conda_env import EnvironmentSpec, read_conda_file
from emulator.env_builds import BuildFailed, EnvironmentBuilds
from rollout.endpoints import get_logs
from tests.conftest import RunningEmulator, example_yaml, sdk_invoke

pytestmark = pytest.mark.emulator

ENDPOINT = "envs-ep"
OLD_SKLEARN = ["scikit-learn==1.2.2", "numpy==1.26.4", "scipy==1.17.1", "joblib==1.6.0"]
IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"

SCORE = """
import glob
import json
import os

import joblib
import sklearn

model = None


def init():
    global model
    (path,) = glob.glob(os.path.join(os.environ["AZUREML_MODEL_DIR"], "**", "model.joblib"),
                        recursive=True)
    model = joblib.load(path)


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return {"predictions": model.predict(rows).tolist(), "sklearn": sklearn.__version__}
"""

TRAIN = """
import sys
import joblib
import numpy as np
from sklearn.linear_model import LinearRegression

x = np.array([[0.0], [1.0], [2.0], [3.0]])
model = LinearRegression().fit(x, 2 * x[:, 0] + 1)
joblib.dump(model, sys.argv[1])
"""


def _conda(folder: Path, pip: list[str], *, python: str = "3.11") -> Path:
    path = folder / "conda.yaml"
    doc = {"name": "env", "dependencies": [f"python={python}", "pip", {"pip": pip}]}
    path.write_text(yaml.safe_dump(doc))
    return path


def _deployment(folder: Path, name: str, *, conda: Path, model: Path, code: Path) -> Path:
    doc = {
        "name": name,
        "endpoint_name": ENDPOINT,
        "model": {"path": str(model)},
        "code_configuration": {"code": str(code), "scoring_script": "score.py"},
        "environment": {"conda_file": str(conda), "image": IMAGE},
        "instance_type": "Standard_DS3_v2",
        "instance_count": 1,
        "request_settings": {"request_timeout_ms": 10000},
    }
    path = folder / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def endpoint(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`envs-ep` with the sample's blue deployment (scikit-learn 1.9.1) taking all traffic."""
    folder = tmp_path_factory.mktemp("envs-yaml")
    apply_file(emulator.state_dir, example_yaml("endpoint", folder, name=ENDPOINT))
    blue = example_yaml("blue-deployment", folder, endpoint_name=ENDPOINT)
    apply_file(emulator.state_dir, blue, all_traffic=True)
    return ENDPOINT


def _score(
    emulator: RunningEmulator, deployment: str, rows: list[list[float]], folder: Path
) -> Any:
    """One scoring request through azure-ai-ml's invoke, to one deployment."""
    request = folder / f"request-{deployment}.json"
    request.write_text(json.dumps({"data": rows}))
    answer = sdk_invoke(emulator.workspace().ml_client, ENDPOINT, request, deployment=deployment)
    return json.loads(answer)


def test_a_model_pickled_with_another_scikit_learn_is_served_in_its_environment(
    emulator: RunningEmulator, endpoint: str, tmp_path: Path
) -> None:
    conda = _conda(tmp_path, OLD_SKLEARN)
    spec = read_conda_file(conda.read_text(), what="old scikit-learn")
    # Built here first (the same cache and key as the emulator's), to train the model with it.
    try:
        python = asyncio.run(EnvironmentBuilds().python_for(spec, lambda line: None))
    except BuildFailed as exc:
        pytest.skip(f"scikit-learn 1.2.2 cannot be installed here (uv, PyPI): {exc}")
    model = tmp_path / "old-model"
    model.mkdir()
    subprocess.run([str(python), "-c", TRAIN, str(model / "model.joblib")], check=True)
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(textwrap.dedent(SCORE))

    apply_file(
        emulator.state_dir, _deployment(tmp_path, "old", conda=conda, model=model, code=code)
    )

    old = _score(emulator, "old", [[10.0]], tmp_path)
    assert old["sklearn"] == "1.2.2"
    assert old["predictions"] == pytest.approx([21.0])
    # The sample, in its own environment (scikit-learn 1.9.1), serves on.
    assert len(_score(emulator, "blue", [[0.1] * 10], tmp_path)) == 1
    storage = get_logs(emulator.workspace(), ENDPOINT, "old", container="storage-initializer")
    assert "image-build" in storage and "scikit-learn==1.2.2" in storage


def test_a_failed_build_fails_its_deployment_with_the_installer_output(
    emulator: RunningEmulator, endpoint: str, tmp_path: Path, examples: Path
) -> None:
    conda = _conda(tmp_path, ["bluegreen-no-such-package-anywhere==1.0"])
    code = examples / "model-1" / "onlinescoring"
    model = examples / "model-1" / "model"
    path = _deployment(tmp_path, "broken", conda=conda, model=model, code=code)

    with pytest.raises(ApplyError, match="could not be built"):
        apply_file(emulator.state_dir, path)

    ws = emulator.workspace()
    broken = ws.ml_client.online_deployments.get("broken", ENDPOINT)
    assert broken.provisioning_state == "Failed"
    storage = get_logs(ws, ENDPOINT, "broken", container="storage-initializer")
    # uv's own words about the package, as the installer printed them
    assert "bluegreen-no-such-package-anywhere" in storage
    assert "image-build" in storage
    # Nothing else disturbed: blue serves, and the cache holds no half-made environment.
    assert len(_score(emulator, "blue", [[0.1] * 10], tmp_path)) == 1
    building = EnvironmentBuilds().cache_dir / ".building"
    assert not any(building.iterdir()) if building.exists() else True
    ws.ml_client.online_deployments.begin_delete("broken", ENDPOINT).result()


def test_a_python_the_emulator_does_not_run_is_refused_before_anything_starts(
    emulator: RunningEmulator, endpoint: str, tmp_path: Path, examples: Path
) -> None:
    conda = _conda(tmp_path, ["joblib==1.6.0"], python="3.8")
    code = examples / "model-1" / "onlinescoring"
    path = _deployment(
        tmp_path, "py38", conda=conda, model=examples / "model-1" / "model", code=code
    )
    with pytest.raises(ApplyError) as refused:
        apply_file(emulator.state_dir, path)
    message = str(refused.value)
    assert "python=3.8" in message and "Python 3.11" in message
    names = [d.name for d in emulator.workspace().ml_client.online_deployments.list(ENDPOINT)]
    assert "py38" not in names


def test_two_deployments_asking_for_one_environment_at_once_share_one_build(
    tmp_path: Path,
) -> None:
    builds = EnvironmentBuilds(tmp_path / "cache")
    spec = EnvironmentSpec(("joblib==1.6.0",))
    logs: tuple[list[str], list[str]] = ([], [])

    async def both() -> tuple[Path, Path]:
        first, second = await asyncio.gather(
            builds.python_for(spec, logs[0].append), builds.python_for(spec, logs[1].append)
        )
        return first, second

    try:
        first, second = asyncio.run(both())
    except BuildFailed as exc:
        pytest.skip(f"uv cannot install joblib here: {exc}")
    assert first == second and first.exists()
    built = [line for log in logs for line in log if line.startswith("building environment")]
    assert len(built) == 1
    assert any("being built for another deployment" in line for line in logs[1])
    # and later asks find it built
    later: list[str] = []
    assert asyncio.run(builds.python_for(spec, later.append)) == first
    assert "built already" in later[0]
    installed = subprocess.run(
        [str(first), "-c", "import joblib, uvicorn; print(joblib.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert installed.stdout.strip() == "1.6.0"
