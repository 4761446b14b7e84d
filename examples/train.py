"""Train the two sample models used by the blue/green safe-rollout example.

Usage::

    python examples/train.py [--force]

Both models are fitted on scikit-learn's bundled diabetes dataset (no download) and saved with
joblib as ``sklearn_regression_model.pkl``:

* ``model-1/model/`` -- ``LinearRegression`` (served by the *blue* deployment)
* ``model-2/model/`` -- ``Ridge(alpha=1.0)`` (served by the *green* deployment); its strong
  shrinkage makes its predictions clearly different from model-1's on ``sample-request.json``.

Pickles are coupled to the scikit-learn version that wrote them, so a stamp file
(``sklearn_version.txt``) is written beside each pickle. The script is idempotent: it does nothing
when both pickles exist and both stamps match the installed scikit-learn version, and retrains
otherwise (or always, with ``--force``). It prints exactly one line describing what it did.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import joblib
import sklearn
from sklearn.base import RegressorMixin
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, Ridge

EXAMPLES_DIR: Path = Path(__file__).resolve().parent
MODEL_FILENAME: str = "sklearn_regression_model.pkl"
STAMP_FILENAME: str = "sklearn_version.txt"

# model directory name -> factory for a fresh, unfitted, deterministic estimator
MODELS: dict[str, Callable[[], RegressorMixin]] = {
    "model-1": LinearRegression,
    "model-2": lambda: Ridge(alpha=1.0, random_state=0),
}


def model_dir(name: str, root: Path = EXAMPLES_DIR) -> Path:
    """Return the directory holding the pickle for model ``name``."""
    return root / name / "model"


def is_up_to_date(name: str, version: str, root: Path = EXAMPLES_DIR) -> bool:
    """True if model ``name``'s pickle exists and its stamp records scikit-learn ``version``."""
    directory = model_dir(name, root)
    pkl = directory / MODEL_FILENAME
    stamp = directory / STAMP_FILENAME
    if not (pkl.is_file() and stamp.is_file()):
        return False
    return stamp.read_text(encoding="utf-8").strip() == version


def train_all(root: Path = EXAMPLES_DIR) -> list[Path]:
    """Fit every model in ``MODELS`` on the diabetes data and save it; return the pickle paths."""
    features, target = load_diabetes(return_X_y=True)
    written: list[Path] = []
    for name, factory in MODELS.items():
        estimator = factory()
        estimator.fit(features, target)
        directory = model_dir(name, root)
        directory.mkdir(parents=True, exist_ok=True)
        pkl = directory / MODEL_FILENAME
        joblib.dump(estimator, pkl)
        (directory / STAMP_FILENAME).write_text(sklearn.__version__ + "\n", encoding="utf-8")
        written.append(pkl)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--force", action="store_true", help="retrain even if the pickles are up to date"
    )
    args = parser.parse_args(argv)

    version = sklearn.__version__
    if not args.force and all(is_up_to_date(name, version) for name in MODELS):
        print(f"train.py: models up to date (scikit-learn {version}); skipped training")
        return 0

    written = train_all()
    rel = ", ".join(str(p.relative_to(EXAMPLES_DIR)) for p in written)
    print(f"train.py: trained {len(written)} models with scikit-learn {version}: {rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
