"""Scoring script for model-2 (the green deployment), following Azure ML's entry-script contract.

The hosting process (``azmlinfsrv`` or the local emulator) sets ``AZUREML_MODEL_DIR``, calls
``init()`` once per worker and ``run(raw_body)`` once per request. Logging handlers are configured
by the host, so this module only creates a logger. Any exception raised by ``run()`` is turned into
an error response by the host.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import joblib

logger: logging.Logger = logging.getLogger(__name__)

MODEL_FILENAME: str = "sklearn_regression_model.pkl"
N_FEATURES: int = 10

model: Any = None


def init() -> None:
    """Load the model from ``$AZUREML_MODEL_DIR/model/sklearn_regression_model.pkl``."""
    global model
    model_dir = os.environ["AZUREML_MODEL_DIR"]
    model_path = os.path.join(model_dir, "model", MODEL_FILENAME)
    model = joblib.load(model_path)
    logger.info("model 2: init complete")


def _parse_rows(raw_data: str | bytes | bytearray) -> list[list[float]]:
    """Parse the request body into rows of ``N_FEATURES`` finite numbers.

    Raises ``ValueError`` for any problem with the payload (encoding, JSON, shape, values).
    """
    if isinstance(raw_data, (bytes, bytearray)):
        try:
            raw_data = raw_data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"request body is not valid UTF-8: {exc}") from exc
    if not isinstance(raw_data, str):
        # The host always passes str/bytes; anything else is a caller bug, not a bad request.
        raise TypeError(f"request body must be str or bytes, got {type(raw_data).__name__}")
    try:
        payload = json.loads(raw_data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or "data" not in payload:
        raise ValueError('request body must be a JSON object with a "data" key')
    data = payload["data"]
    if not isinstance(data, list) or not data:
        raise ValueError(f'"data" must be a non-empty list of rows of {N_FEATURES} numbers')
    rows: list[list[float]] = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != N_FEATURES:
            raise ValueError(f'"data"[{i}] must be a list of exactly {N_FEATURES} numbers')
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                # A non-numeric cell is bad client input: ValueError like every other payload error.
                message = f'"data"[{i}][{j}] must be a number, got {value!r}'
                raise ValueError(message)
            if not math.isfinite(value):
                raise ValueError(f'"data"[{i}][{j}] must be finite, got {value!r}')
        rows.append([float(value) for value in row])
    return rows


def run(raw_data: str | bytes | bytearray) -> list[float]:
    """Score a request body ``{"data": [[10 numbers], ...]}``; return one prediction per row."""
    logger.info("model 2: request received")
    if model is None:
        raise RuntimeError("model 2: init() has not been called")
    rows = _parse_rows(raw_data)
    predictions = model.predict(rows)
    return [float(p) for p in predictions]
