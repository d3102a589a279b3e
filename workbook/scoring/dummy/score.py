"""Dummy scoring script for azmlinfsrv: one deterministic probability per input row.

It runs inside the scoring image (and as the local pods), so it imports nothing from ``workbook``.
The model is ``model.json`` ({"name", "version", "bias"}) under ``AZUREML_MODEL_DIR``, either in the
AML layout ``<dir>/<model name>/<version>/model.json`` or directly as ``<dir>/model.json``.
Request: ``{"data": [[x, ...], ...]}``. Answer: ``{"version", "model", "predictions", "n"}``
with the ``x-model-version`` response header. Empty input (``GET /score``) answers ``n`` 0.

Fault rehearsal: ``fault_injection.py`` (copied next to this file; read in ``init()``, injected
in ``run()``). ``DUMMY_INIT_FAIL`` set makes ``init()`` fail: a version that cannot start.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

# fault_injection.py lies next to score.py in an image, one folder up in the source tree
_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(p) for p in (_HERE, _HERE.parent) if (p / "fault_injection.py").is_file()][:1]
from fault_injection import Faults  # noqa: E402

try:  # the supported import since azureml-inference-server-http 0.8
    from azureml_inference_server_http.api.aml_response import AMLResponse
except ImportError:  # pragma: no cover - legacy images that ship azureml-defaults only
    try:
        from azureml.contrib.services.aml_response import AMLResponse
    except ImportError:
        AMLResponse = None

MODEL_FILE = "model.json"
VERSION_HEADER = "x-model-version"
#: The largest request body scored (``DUMMY_MAX_BODY_BYTES``); a larger one is a 413.
MAX_BODY_BYTES = int(os.environ.get("DUMMY_MAX_BODY_BYTES") or 1 << 20)

logger = logging.getLogger("azmlinfsrv.score")

MODEL: dict[str, Any] = {}
MODEL_VERSION = ""
FAULTS = Faults()


class BadRequest(ValueError):
    """The request payload is not ``{"data": [[number, ...], ...]}`` (``status``: 400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def find_model_file(model_dir: Path, version: str | None = None) -> Path:
    """``model.json`` directly in ``model_dir`` or in its AML layout ``<name>/<version>/``.

    With several AML candidates, the one whose version directory equals ``version`` wins.
    """
    direct = model_dir / MODEL_FILE
    if direct.is_file():
        return direct
    candidates = sorted(model_dir.glob(f"*/*/{MODEL_FILE}"))
    if version:
        matching = [c for c in candidates if c.parent.name == version]
        if len(matching) == 1:
            return matching[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FileNotFoundError(
            f"no {MODEL_FILE} in AZUREML_MODEL_DIR {model_dir} "
            f"(looked for {MODEL_FILE} and <name>/<version>/{MODEL_FILE})"
        )
    found = ", ".join(str(c.relative_to(model_dir)) for c in candidates)
    raise FileNotFoundError(
        f"several models in AZUREML_MODEL_DIR {model_dir} ({found}); set MODEL_VERSION to pick one"
    )


def init() -> None:
    """Load the model named by ``AZUREML_MODEL_DIR``; ``MODEL_VERSION`` overrides its version."""
    global MODEL, MODEL_VERSION, FAULTS
    if os.environ.get("DUMMY_INIT_FAIL"):
        raise RuntimeError("DUMMY_INIT_FAIL is set: init() fails on purpose")
    model_dir = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    env_version = os.environ.get("MODEL_VERSION", "").strip()
    path = find_model_file(model_dir, env_version or None)
    model = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(model, dict) or not isinstance(model.get("bias"), int | float):
        raise ValueError(f"{path}: expected an object with a numeric 'bias', got {model!r}")
    MODEL = model
    MODEL_VERSION = env_version or str(model.get("version", ""))
    FAULTS = Faults.from_env()
    logger.info("loaded model %s version %s from %s", model.get("name"), MODEL_VERSION, path)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def predict_row(row: list[float], bias: float) -> float:
    """A probability in 0..1, a pure function of the row and the model bias."""
    z = bias + sum(x * ((i % 7) - 3) / 10.0 for i, x in enumerate(row))
    return round(_sigmoid(z), 6)


def parse_rows(raw: Any) -> list[list[float]]:
    """The rows of a request; empty input is no rows. Raises BadRequest naming what is wrong."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadRequest(f"payload is not UTF-8: {e}") from None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return []
    if isinstance(raw, str):
        if len(raw) > MAX_BODY_BYTES:
            raise BadRequest(f"payload is {len(raw)} bytes, more than {MAX_BODY_BYTES}", 413)
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise BadRequest(f"payload is not JSON: {e}") from None
        except RecursionError:
            raise BadRequest("payload nests deeper than JSON rows of numbers can") from None
    if raw == {}:  # GET /score without query parameters
        return []
    if not isinstance(raw, dict) or "data" not in raw:
        raise BadRequest('payload must be a JSON object {"data": [[number, ...], ...]}')
    data = raw["data"]
    if not isinstance(data, list):
        raise BadRequest(f"data must be a list of rows, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, list):
            raise BadRequest(f"data[{i}] must be a list of numbers, got {type(row).__name__}")
        for j, x in enumerate(row):
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise BadRequest(f"data[{i}][{j}] must be a finite number, got {x!r}")
    return data


def score(raw: Any) -> dict[str, Any]:
    """The JSON answer for one request (raises BadRequest on a malformed payload)."""
    if not MODEL:
        raise RuntimeError("init() has not loaded a model")
    rows = parse_rows(raw)
    bias = float(MODEL["bias"])
    return {
        "version": MODEL_VERSION,
        "model": MODEL.get("name"),
        "predictions": [FAULTS.drifted(predict_row(row, bias)) for row in rows],
        "n": len(rows),
    }


def _unread_body(raw: Any, request_headers: dict[str, str] | None) -> str | None:
    """Why a non-empty body reached run() as empty input, if it did.

    The server hands run() ``request.data``, which Flask leaves empty for form-encoded bodies
    (``curl -d`` without a Content-Type): say so instead of answering ``n`` 0.
    """
    if raw not in (None, "", b"") or not request_headers:
        return None
    headers = {k.lower(): v for k, v in request_headers.items()}
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return None
    kind = headers.get("content-type", "none")
    return f"the {length}-byte body (Content-Type {kind}) was not read; send application/json"


def run(raw: Any, request_headers: dict[str, str] | None = None) -> Any:
    """azmlinfsrv entry: 200 with the answer, or 400 ``{"message"}``; both carry x-model-version."""
    headers = {VERSION_HEADER: MODEL_VERSION}
    if FAULTS.before_answer() and AMLResponse is not None:
        return AMLResponse(
            {"message": "injected failure (FAULT_ERROR_RATE)"}, 500, headers, json_str=True
        )
    try:
        unread = _unread_body(raw, request_headers)
        if unread:
            raise BadRequest(unread)
        answer = score(raw)
    except BadRequest as e:
        if AMLResponse is None:  # pragma: no cover - no way to set a status code
            raise
        return AMLResponse({"message": str(e)}, e.status, headers, json_str=True)
    if AMLResponse is None:  # pragma: no cover
        return answer
    return AMLResponse(answer, 200, headers, json_str=True)
