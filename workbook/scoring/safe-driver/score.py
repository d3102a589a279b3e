"""Safe-driver scoring script for azmlinfsrv: the probability that a driver files a claim.

It runs inside the scoring image (and as the local pods), so it imports nothing from ``workbook``;
rehearsal faults come from ``fault_injection.py``, copied next to it.
Files next to it: ``schema.json`` (the 57 Porto Seguro columns, their types and an example row).
The model is a LightGBM text model ``model.txt`` with ``model.json`` ({"name", "version",
"features", "metrics", ...}) under ``AZUREML_MODEL_DIR``, in the AML layout
``<dir>/<model name>/<version>/`` or directly in ``<dir>``.

Request: ``{"data": [{"ps_ind_01": 2, ..., "ps_calc_20_bin": 0}, ...]}`` with every schema column
(-1 for missing). Answer: ``{"version", "model", "predictions", "n"}``, ``predictions`` being the
claim probabilities, with the ``x-model-version`` header. A malformed request is a 400 (413 for
more than ``SAFE_DRIVER_MAX_ROWS`` rows) whose JSON ``message`` and ``field`` name what is wrong.
Empty input (``GET /score``, what health checks send) answers ``n`` 0.

Threads: ``SAFE_DRIVER_THREADS`` (default 1) LightGBM threads per request, and the OpenMP pool
(``OMP_NUM_THREADS``) defaults to the same, so several sync workers do not oversubscribe the CPUs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


THREADS = _positive_int_env("SAFE_DRIVER_THREADS", 1)
MAX_ROWS = _positive_int_env("SAFE_DRIVER_MAX_ROWS", 1000)
# Before numpy and lightgbm start their thread pools.
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import lightgbm  # noqa: E402
import numpy as np  # noqa: E402
from azureml_inference_server_http.api.aml_response import AMLResponse  # noqa: E402

# fault_injection.py lies next to score.py in an image, one folder up in the source tree
_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent) if (p / "fault_injection.py").is_file()][:1]
from fault_injection import Faults  # noqa: E402
from inference_schema.parameter_types.standard_py_parameter_type import (  # noqa: E402
    StandardPythonParameterType,
)
from inference_schema.schema_decorators import input_schema, output_schema  # noqa: E402

MODEL_FILE = "model.txt"
META_FILE = "model.json"
VERSION_HEADER = "x-model-version"
MISSING = -1

SCHEMA: dict[str, Any] = json.loads((Path(__file__).with_name("schema.json")).read_text("utf-8"))
COLUMNS: list[tuple[str, str]] = [(c["name"], c["type"]) for c in SCHEMA["columns"]]
COLUMN_NAMES = [name for name, _ in COLUMNS]
SCHEMA_SET = frozenset(COLUMN_NAMES)
EXAMPLE_ROW: dict[str, Any] = SCHEMA["example"]
EXAMPLE_ANSWER = {"version": "v1", "model": "safe-driver-lgbm", "predictions": [0.0312], "n": 1}

logger = logging.getLogger("azmlinfsrv.score")

MODEL: dict[str, Any] = {}
BOOSTER: Any = None
MODEL_VERSION = ""
FAULTS = Faults()


class BadRequest(ValueError):
    """The request does not match the schema; ``field`` names where, ``status`` is the HTTP code."""

    def __init__(self, message: str, field: str = "data", status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def find_model_dir(model_dir: Path, version: str | None = None) -> Path:
    """The folder holding ``model.json``: ``model_dir`` itself or its AML ``<name>/<version>/``.

    With several AML candidates, the one whose version folder equals ``version`` wins.
    """
    if (model_dir / META_FILE).is_file():
        return model_dir
    candidates = sorted(p.parent for p in model_dir.glob(f"*/*/{META_FILE}"))
    if version:
        matching = [c for c in candidates if c.name == version]
        if len(matching) == 1:
            return matching[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FileNotFoundError(
            f"no {META_FILE} in AZUREML_MODEL_DIR {model_dir} "
            f"(looked for {META_FILE} and <name>/<version>/{META_FILE})"
        )
    found = ", ".join(str(c.relative_to(model_dir)) for c in candidates)
    raise FileNotFoundError(
        f"several models in AZUREML_MODEL_DIR {model_dir} ({found}); set MODEL_VERSION to pick one"
    )


def init() -> None:
    """Load the model once per worker; ``MODEL_VERSION`` overrides the version it reports."""
    global MODEL, BOOSTER, MODEL_VERSION, FAULTS
    model_dir = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    env_version = os.environ.get("MODEL_VERSION", "").strip()
    folder = find_model_dir(model_dir, env_version or None)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    unknown = [f for f in meta.get("features", []) if f not in COLUMN_NAMES]
    if not meta.get("features") or unknown:
        raise ValueError(
            f"{folder / META_FILE}: features must be schema columns, unknown: {unknown}"
        )
    booster = lightgbm.Booster(model_file=str(folder / meta.get("model_file", MODEL_FILE)))
    if booster.feature_name() != meta["features"]:
        raise ValueError(f"{folder}: the model's features differ from model.json's")
    MODEL, BOOSTER = meta, booster
    MODEL_VERSION = env_version or str(meta.get("version", ""))
    FAULTS = Faults.from_env()
    logger.info(
        "loaded model %s version %s (%d features, %d threads, at most %d rows) from %s",
        meta.get("name"),
        MODEL_VERSION,
        len(meta["features"]),
        THREADS,
        MAX_ROWS,
        folder,
    )


def _check_value(value: Any, kind: str, where: str) -> float:
    """The value as a float, or BadRequest saying what the column takes."""
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if kind == "binary":
        if ok and value in (0, 1):
            return float(value)
        raise BadRequest(f"{where} must be 0 or 1, got {value!r}", where)
    if kind in ("category", "integer"):
        if ok and float(value).is_integer() and value >= MISSING:
            return float(value)
        raise BadRequest(f"{where} must be a whole number, -1 for missing, got {value!r}", where)
    if ok:
        return float(value)
    raise BadRequest(f"{where} must be a finite number, -1 for missing, got {value!r}", where)


def _some(noun: str, names: list[str], shown: int = 5) -> str:
    """``column a``, ``columns a, b`` or ``columns a, b, ... and 3 more``."""
    text = ", ".join(names[:shown])
    if len(names) > shown:
        text += f" and {len(names) - shown} more"
    return f"{noun}{'s' if len(names) > 1 else ''} {text}"


def parse_rows(data: Any) -> np.ndarray:
    """Validate ``data`` against the schema; the rows as a float matrix in schema column order."""
    if not isinstance(data, list):
        raise BadRequest(
            f"data must be a list of rows ({{column: value}} objects), got {type(data).__name__}"
        )
    if len(data) > MAX_ROWS:
        raise BadRequest(
            f"data has {len(data)} rows; at most {MAX_ROWS} per request (SAFE_DRIVER_MAX_ROWS)",
            status=413,
        )
    X = np.empty((len(data), len(COLUMNS)), dtype=np.float64)
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise BadRequest(
                f"data[{i}] must be an object {{column: value}}, got {type(row).__name__}",
                f"data[{i}]",
            )
        missing = [name for name in COLUMN_NAMES if name not in row]
        if missing:
            raise BadRequest(
                f"data[{i}] lacks {_some('column', missing)} (send -1 for a missing value)",
                f"data[{i}].{missing[0]}",
            )
        if len(row) != len(COLUMNS):
            extra = sorted(str(k) for k in row if k not in SCHEMA_SET)
            raise BadRequest(
                f"data[{i}] has unknown {_some('column', extra)}", f"data[{i}].{extra[0]}"
            )
        for j, (name, kind) in enumerate(COLUMNS):
            X[i, j] = _check_value(row[name], kind, f"data[{i}].{name}")
    return X


def score(data: Any) -> dict[str, Any]:
    """The answer for one request's ``data`` (None is empty input); raises BadRequest."""
    if BOOSTER is None:
        raise RuntimeError("init() has not loaded a model")
    X = parse_rows([] if data is None else data)
    predictions: list[float] = []
    if len(X):
        idx = [COLUMN_NAMES.index(f) for f in MODEL["features"]]
        predicted = BOOSTER.predict(X[:, idx], num_threads=THREADS).tolist()
        predictions = [FAULTS.drifted(float(p)) for p in predicted]
    return {
        "version": MODEL_VERSION,
        "model": MODEL.get("name"),
        "predictions": predictions,
        "n": len(predictions),
    }


def _body_length(request_headers: dict[str, str] | None) -> int:
    for key, value in (request_headers or {}).items():
        if key.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


@input_schema("data", StandardPythonParameterType([EXAMPLE_ROW]), convert_to_provided_type=False)
@output_schema(StandardPythonParameterType(EXAMPLE_ANSWER))
def run(data: Any = None, *, request_headers: dict[str, str] | None = None) -> Any:
    """azmlinfsrv entry (the server parses the JSON body and passes its ``data``): 200 with the
    answer, or 4xx ``{"message", "field"}``; both carry ``x-model-version``.

    ``request_headers`` is keyword-only so that inference-schema, which lists every positional
    parameter as an input field, keeps it out of the published swagger.
    """
    headers = {VERSION_HEADER: MODEL_VERSION}
    if FAULTS.before_answer():
        return AMLResponse(
            {"message": "injected failure (FAULT_ERROR_RATE)"}, 500, headers, json_str=True
        )
    try:
        if data is None and _body_length(request_headers) > 0:
            raise BadRequest(
                'the JSON body has no "data" field: send {"data": [{column: value, ...}, ...]}'
            )
        answer = score(data)
    except BadRequest as e:
        body = {"message": str(e), "field": e.field}
        return AMLResponse(body, e.status, headers, json_str=True)
    return AMLResponse(answer, 200, headers, json_str=True)
